#!/usr/bin/env bash
# A held-out Fashion-MNIST MLP probe with two groups per class (K = 20), run as a user would: every group is half of
# a class, so every draw of 4 groups thins four classes (or removes one whole). The README's commands, then six
# random draws unlearned with --verify 3. Outputs beside this script; measured once, used for no choice.
set -euo pipefail
here=$(dirname "$0")
ddm=${DDM:-.venv/bin/ddm}
$ddm run -w runs/p24/mlp20 --preset demo --dataset fashion-mnist --set data.train_size=3000 --set data.test_size=1000 \
  --set model.name=mlp --set model.width=128 --set model.depth=3 --set train.lr=0.1 --set train.batch_size=32 \
  --set train.epochs=15 --set cluster.per_class=2 --set model.seed=241 --set train.seed=241 -q > "$here/mlp20-run.txt" 2>&1
for g in 15,5,9,6 13,8,17,7 15,11,13,16 19,6,9,10 16,2,6,14 4,17,6,13; do  # random.Random(2024).sample(range(20), 4)
  $ddm unlearn --method step -w runs/p24/mlp20 --groups $g --verify 3 -q > "$here/mlp20-unlearn-$g.txt" 2>&1
done

# The same data and draws with the demo preset's ConvNet (two groups per class as above).
$ddm run -w runs/p24/conv20 --preset demo --dataset fashion-mnist --set data.train_size=3000 --set data.test_size=1000 \
  --set cluster.per_class=2 --set model.seed=242 --set train.seed=242 -q > "$here/conv20-run.txt" 2>&1
for g in 15,5,9,6 13,8,17,7 15,11,13,16 19,6,9,10 16,2,6,14 4,17,6,13; do
  $ddm unlearn --method step -w runs/p24/conv20 --groups $g --verify 3 -q > "$here/conv20-unlearn-$g.txt" 2>&1
done

# Afterwards (BENCHMARKS.md, "Two groups per class"): the attribution check and the diagnosis, verified.
$ddm check -w runs/p24/mlp20 --peers if-explicit,tracin -q > "$here/mlp20-check.txt" 2>&1
$ddm diagnose -w runs/p24/mlp20 -q --verify 3 > "$here/mlp20-diagnose.txt" 2>&1
$ddm diagnose -w runs/p24/conv20 -q --verify 3 > "$here/conv20-diagnose.txt" 2>&1
