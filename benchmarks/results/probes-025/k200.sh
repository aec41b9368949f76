#!/usr/bin/env bash
# A probe on an axis the matrix never had, run as a user would (measured once, used for no choice): many small groups
# on an MLP. Fashion-MNIST 6,000 images, MLP 2 x 256 with momentum, K = 200 (20 k-means groups per class, about 30
# samples each), seed 301: ddm run, ddm check with two peers, ddm unlearn of 4 random groups (--verify 3) and of one
# class, ddm diagnose. Outputs beside this script (k200-*.txt).
set -u
ddm=${DDM:-.venv/bin/ddm}
out=$(dirname "$0")
W=runs/p25/f-mlp-K200
$ddm run -w $W --dataset fashion-mnist --set data.train_size=6000 --set data.test_size=1000 --preset demo \
  --set model.name=mlp --set model.width=256 --set model.depth=2 --set train.lr=0.02 --set train.momentum=0.9 \
  --set cluster.per_class=20 --set model.seed=301 --set train.seed=301 -q > $out/k200-run.txt 2>&1
$ddm check -w $W -q --peers if-explicit,tracin > $out/k200-check.txt 2>&1
$ddm unlearn -w $W -q --groups 17,64,118,190 --verify 3 > $out/k200-unlearn.txt 2>&1
$ddm unlearn -w $W -q --groups 7 --classes --verify 1 > $out/k200-unlearn-class.txt 2>&1
$ddm diagnose -w $W -q > $out/k200-diagnose.txt 2>&1
$ddm diagnose -w $W -q --verify 3 > $out/k200-diagnose-verify.txt 2>&1
