#!/usr/bin/env bash
# The held-out workspaces of BENCHMARKS.md "Relabelled fine-tuning" (after the rule was written down; see there).
set -euo pipefail
ddm=${DDM:-.venv/bin/ddm}
$ddm run -w runs/p23/mlp --preset demo --dataset fashion-mnist --set data.train_size=3000 --set data.test_size=1000 \
  --set model.name=mlp --set model.width=128 --set model.depth=3 --set train.lr=0.1 --set train.batch_size=32 \
  --set train.epochs=15 --set cluster.per_class=4 --set model.seed=201 --set train.seed=201 -q --targets 0:1 > /dev/null
$ddm run -w runs/p24/dmlp20 --preset demo --set model.name=mlp --set model.width=128 --set model.depth=2 \
  --set cluster.per_class=2 --set model.seed=251 --set train.seed=251 -q --targets 0:1 > /dev/null
$ddm run -w runs/p24/dconv20 --preset demo --set cluster.per_class=2 --set model.seed=252 --set train.seed=252 \
  -q --targets 0:1 > /dev/null
$ddm run -w runs/p24/mlp20adam --preset demo --dataset fashion-mnist --set data.train_size=3000 --set data.test_size=1000 \
  --set model.name=mlp --set model.width=128 --set model.depth=3 --set train.optimizer=adam --set train.lr=0.001 \
  --set train.batch_size=32 --set train.epochs=15 --set cluster.per_class=2 --set model.seed=253 --set train.seed=253 \
  -q --targets 0:1 > /dev/null
