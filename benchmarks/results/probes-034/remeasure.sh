#!/usr/bin/env bash
# the p32 probe's `ddm run` alone on the machine (nothing else running), twice, fresh workspaces
set -euo pipefail
for i in 1 2; do
  WS=runs/p34/remeasure-$i; rm -rf $WS
  /usr/bin/time -v .venv/bin/ddm run -w $WS --dataset fashion-mnist --set data.train_size=3000 --set data.test_size=1000 \
    --set model.name=resnet --set model.width=16 --set model.depth=2 --set train.epochs=5 --set train.lr=0.05 \
    --set train.momentum=0.9 --set train.weight_decay=5e-4 --set cluster.per_class=10 -q > runs/p34/remeasure-$i.log 2>&1
done
