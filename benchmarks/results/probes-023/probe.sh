#!/usr/bin/env bash
# A held-out Fashion-MNIST MLP probe run as a user would (BENCHMARKS.md, "The rewind's guard"): the README's commands,
# then six random draws of 4 groups unlearned with --verify 3. Outputs beside this script.
set -euo pipefail
here=$(dirname "$0")
ddm=${DDM:-.venv/bin/ddm}
$ddm run -w runs/p23/mlp --preset demo --dataset fashion-mnist --set data.train_size=3000 --set data.test_size=1000 \
  --set model.name=mlp --set model.width=128 --set model.depth=3 --set train.lr=0.1 --set train.batch_size=32 \
  --set train.epochs=15 --set cluster.per_class=4 --set model.seed=201 --set train.seed=201 -q > "$here/mlp-run.txt" 2>&1
for g in 24,28,20,39 36,21,6,7 19,34,33,11 14,11,1,13 23,4,39,8 2,12,9,30; do  # random.Random(2023).sample(range(40), 4)
  $ddm unlearn --method step -w runs/p23/mlp --groups $g --verify 3 -q > "$here/mlp-unlearn-$g.txt" 2>&1
done
