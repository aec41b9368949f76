#!/usr/bin/env bash
# A probe on an axis the matrix never had, run as a user would (measured once, used for no choice): a thousand groups
# of about ten samples. Fashion-MNIST 10,000 images, MLP 2 x 256 with momentum, K = 1000 (100 k-means groups per
# class), seed 321: ddm run, ddm check with two peers, ddm unlearn of 4 groups (--verify 3) and of one class,
# ddm diagnose. The unlearned groups and class were written here before the run. Outputs beside this script.
set -u
ddm=${DDM:-.venv/bin/ddm}
out=$(dirname "$0")
W=runs/p27/f-mlp-K1000
/usr/bin/time -f "%e s, %M KB peak" $ddm run -w $W --dataset fashion-mnist --set data.train_size=10000 \
  --set data.test_size=1000 --preset demo --set model.name=mlp --set model.width=256 --set model.depth=2 \
  --set train.lr=0.02 --set train.momentum=0.9 --set cluster.per_class=100 --set model.seed=321 --set train.seed=321 \
  -q > $out/k1000-run.txt 2>&1
/usr/bin/time -f "%e s, %M KB peak" $ddm check -w $W -q --peers if-explicit,tracin > $out/k1000-check.txt 2>&1
$ddm unlearn -w $W -q --groups 137,402,655,918 --verify 3 > $out/k1000-unlearn.txt 2>&1
$ddm unlearn -w $W -q --groups 3 --classes --verify 1 > $out/k1000-unlearn-class.txt 2>&1
$ddm diagnose -w $W -q > $out/k1000-diagnose.txt 2>&1
$ddm diagnose -w $W -q --verify 3 > $out/k1000-diagnose-verify.txt 2>&1
