#!/usr/bin/env bash
# A probe run as a user would (after 0.28, measured once, used for no choice): a Fashion-MNIST ConvNet trained with
# AdamW and a cosine schedule, K = 60 (6 k-means groups per class, a K the matrix never had), 4,000 images. The
# workspace's own check with last-layer influence and both EK-FACs beside DDM; 4 random groups unlearned and a whole
# class, each verified in 3 data orders; the diagnosis.
set -euo pipefail
WS=${WS:-runs/p33/fm-convnet-adamw-k60}
ddm=${DDM:-.venv/bin/ddm}
$ddm run -w $WS --dataset fashion-mnist --set data.train_size=4000 --set data.test_size=1000 \
  --set train.optimizer=adamw --set train.lr=0.002 --set train.weight_decay=0.01 --set train.schedule=cosine \
  --set train.epochs=12 --set cluster.per_class=6 -q
$ddm check -w $WS --peers if-explicit,kronfluence,ekfac -q
# four groups drawn once with Python's random.Random(33) from the 60
DRAW=$(python3 -c "import random; print(','.join(map(str, sorted(random.Random(33).sample(range(60), 4)))))")
$ddm unlearn -w $WS --groups $DRAW --verify 3
$ddm unlearn -w $WS --groups 6 --classes --verify 3
$ddm diagnose -w $WS
