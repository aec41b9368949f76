#!/usr/bin/env bash
# A probe run as a user would (after 0.28, measured once, used for no choice): a Fashion-MNIST ConvNet with batch
# norm, trained with Adam (L2 decay 1e-4) at a constant rate, K = 50 (5 k-means groups per class), 3,000 / 1,000
# images. The workspace's check with last-layer influence and kronfluence beside DDM; 4 random groups unlearned and
# verified in 3 data orders; the diagnosis.
set -euo pipefail
WS=${WS:-runs/p34/fm-bn-adam-k50}
ddm=${DDM:-.venv/bin/ddm}
/usr/bin/time -f "run: %e s, %M KB peak" $ddm run -w $WS --dataset fashion-mnist --set data.train_size=3000 \
  --set data.test_size=1000 --set model.norm=batchnorm --set train.optimizer=adam --set train.lr=0.001 \
  --set train.weight_decay=1e-4 --set train.epochs=10 --set cluster.per_class=5 -q
$ddm check -w $WS --peers if-explicit,kronfluence -q
# four groups drawn once with Python's random.Random(34) from the 50
DRAW=$(python3 -c "import random; print(','.join(map(str, sorted(random.Random(34).sample(range(50), 4)))))")
$ddm unlearn -w $WS --groups $DRAW --verify 3
$ddm diagnose -w $WS
