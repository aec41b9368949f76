#!/usr/bin/env bash
# Three Fashion-MNIST ConvNet probes run as a user would (after 0.28; measured once): 4,000 / 1,000 images, the
# depth-3 ConvNet, 10 epochs, batch 128, 3 k-means groups per class; three optimizers. About 40 minutes on 2 cores.
set -euo pipefail
C="--dataset fashion-mnist --set data.train_size=4000 --set data.test_size=1000 --set model.depth=3 --set train.epochs=10 --set train.batch_size=128 --set cluster.per_class=3 -q"
ddm run -w runs/u1/ws $C --set train.optimizer=adamw --set train.lr=0.002 --set train.weight_decay=0.05 --set train.schedule=cosine
ddm unlearn -w runs/u1/ws --groups 2,11,19,25 --verify 3 -q
ddm check -w runs/u1/ws -q
python benchmarks/unlearn_relabel.py runs/u1/ws --out runs/u1/relabel-soft10
python benchmarks/unlearn_relabel.py runs/u1/ws --soft 0 --out runs/u1/relabel-hard
ddm run -w runs/u1/u2 $C --set train.optimizer=sgd --set train.momentum=0.9 --set train.lr=0.01 --set train.weight_decay=5e-4 --set train.schedule=cosine
python benchmarks/unlearn_relabel.py runs/u1/u2 --out runs/u1/u2-relabel
ddm check -w runs/u1/u2 -q
ddm run -w runs/u1/u3 $C --set train.optimizer=adamw --set train.lr=0.001 --set train.weight_decay=0.05
python benchmarks/unlearn_relabel.py runs/u1/u3 --out runs/u1/u3-relabel
ddm check -w runs/u1/u3 -q
python benchmarks/results/probes-030/relabel_precision.py runs/u1/ws 17,2,20,26
