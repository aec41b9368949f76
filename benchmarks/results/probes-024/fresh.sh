#!/usr/bin/env bash
# Fresh held-out configurations for relabelled fine-tuning as it stands (after the cosine fix; BENCHMARKS.md,
# "Relabelled fine-tuning"): trained for this check only, measured once. The test, written before the run: relabelled
# fine-tuning stays ddm unlearn's default if, pooled over these 24 four-group draws, it is within 3 points of exact
# retraining (mean of 3 orders) on at least as many draws as the synsets' step and its mean |gap| is not higher;
# otherwise the default goes back to the step, and this is reported.
set -euo pipefail
ddm=${DDM:-.venv/bin/ddm}
py=${PY:-.venv/bin/python}
FM="--dataset fashion-mnist --set data.train_size=3000 --set data.test_size=1000"
$ddm run -w runs/p24/f-conv-mom $FM --preset demo --set model.width=16 --set train.lr=0.02 --set train.momentum=0.9 \
  --set train.weight_decay=5e-4 --set train.epochs=10 --set cluster.per_class=4 --set model.seed=271 --set train.seed=271 \
  -q --targets 0:1 > /dev/null
$ddm run -w runs/p24/d-mlp-cos --preset demo --set model.name=mlp --set model.width=128 --set model.depth=2 \
  --set train.schedule=cosine --set train.momentum=0.9 --set train.lr=0.05 --set cluster.per_class=4 \
  --set model.seed=272 --set train.seed=272 -q --targets 0:1 > /dev/null
$ddm run -w runs/p24/f-mlp-adam100 $FM --preset demo --set model.name=mlp --set model.width=256 --set model.depth=2 \
  --set train.optimizer=adam --set train.lr=0.001 --set train.epochs=10 --set train.batch_size=64 \
  --set cluster.per_class=10 --set model.seed=273 --set train.seed=273 -q --targets 0:1 > /dev/null
$ddm run -w runs/p24/d-gn20 --preset demo --set model.norm=groupnorm --set train.lr=0.02 --set train.momentum=0.9 \
  --set cluster.per_class=2 --set model.seed=274 --set train.seed=274 -q --targets 0:1 > /dev/null
$py benchmarks/unlearn_relabel.py runs/p24/f-conv-mom runs/p24/d-mlp-cos runs/p24/f-mlp-adam100 runs/p24/d-gn20 \
  --draw-seed 2026 --agree 1 --out benchmarks/results/unlearn-relabel-fresh  # the bare majority, as run then
