#!/usr/bin/env bash
# Relabelled fine-tuning where the pixels' neighbours are misleading: the RGB probes of "RGB images through the
# CIFAR-10 reader" (Fashion-MNIST shapes in a random foreground colour on a random background colour, so colour, a
# nuisance, dominates the raw-pixel distances that relabelling's neighbours are taken in). The two probes' workspaces
# rebuilt with their documented settings (rgb1: the demo ConvNet; rgb2: a GroupNorm ResNet, momentum, weight decay,
# cosine schedule, where the synsets' step missed exact retraining by 9.9 points); 6 random four-group draws each
# (draw seed 2029), exact retraining in 3 data orders. Measured once; it tests the default and chooses nothing.
set -euo pipefail
ddm=${DDM:-.venv/bin/ddm}
py=${PY:-.venv/bin/python}
[ -d runs/rgb/cifar-10-batches-bin ] || $py benchmarks/results/probes-rgb/make_data.py
RGB="--dataset cifar10 --data-dir runs/rgb --set data.train_size=3000 --set data.test_size=1000 --set cluster.per_class=4"
$ddm run -w runs/rgb/rgb1 $RGB --preset demo --set model.seed=131 --set train.seed=131 -q --targets 0:1 > /dev/null
$ddm run -w runs/rgb/rgb2 $RGB --preset demo --set model.name=resnet --set model.width=16 --set model.depth=2 \
  --set train.momentum=0.9 --set train.lr=0.02 --set train.weight_decay=5e-4 --set train.schedule=cosine \
  --set model.seed=133 --set train.seed=133 -q --targets 0:1 > /dev/null
$py benchmarks/unlearn_relabel.py runs/rgb/rgb1 runs/rgb/rgb2 --draw-seed 2029 \
  --out benchmarks/results/unlearn-relabel-rgb
