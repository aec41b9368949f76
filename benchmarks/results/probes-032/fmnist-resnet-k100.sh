#!/usr/bin/env bash
# A probe run as a user would (after 0.28, measured once, used for no choice): the matrix names a small
# GroupNorm ResNet on Fashion-MNIST with K = 100, which the report configurations never had. Momentum SGD with
# weight decay; the workspace's own check with last-layer influence and EK-FAC beside DDM; 4 random groups unlearned
# and verified in 3 data orders.
set -euo pipefail
WS=${WS:-runs/p32/fm-resnet-gn-k100}
ddm=${DDM:-.venv/bin/ddm}
$ddm run -w $WS --dataset fashion-mnist --set data.train_size=3000 --set data.test_size=1000 \
  --set model.name=resnet --set model.width=16 --set model.depth=2 --set train.epochs=5 --set train.lr=0.05 \
  --set train.momentum=0.9 --set train.weight_decay=5e-4 --set cluster.per_class=10 -q
$ddm check -w $WS --peers if-explicit,ekfac -q
# four groups drawn once with Python's random.Random(32) from the 100
DRAW=$(python3 -c "import random; print(','.join(map(str, sorted(random.Random(32).sample(range(100), 4)))))")
$ddm unlearn -w $WS --groups $DRAW --verify 3
$ddm diagnose -w $WS
