#!/usr/bin/env bash
# A probe on an axis the matrix never had, run as a user would (measured once, used for no choice): the full
# Fashion-MNIST training split (60,000 images, six times the matrix's largest), an MLP 2 x 256 with momentum,
# K = 100 (10 k-means groups per class, about 600 samples each), seed 311: ddm run, ddm check with two peers,
# ddm unlearn of 4 random groups (--verify 3) and of one class, ddm diagnose. Outputs beside this script.
set -u
ddm=${DDM:-.venv/bin/ddm}
out=$(dirname "$0")
W=runs/p26/f-mlp-60k
mkdir -p runs/p26
$ddm run -w $W --dataset fashion-mnist --set data.train_size=60000 --set data.test_size=2000 --preset demo \
  --set model.name=mlp --set model.width=256 --set model.depth=2 --set train.lr=0.02 --set train.momentum=0.9 \
  --set cluster.per_class=10 --set model.seed=311 --set train.seed=311 -q > $out/large-n-run.txt 2>&1
$ddm check -w $W -q --peers if-explicit,tracin > $out/large-n-check.txt 2>&1
$ddm unlearn -w $W -q --groups 12,47,73,95 --verify 3 > $out/large-n-unlearn.txt 2>&1
$ddm unlearn -w $W -q --groups 4 --classes --verify 1 > $out/large-n-unlearn-class.txt 2>&1
$ddm diagnose -w $W -q > $out/large-n-diagnose.txt 2>&1
