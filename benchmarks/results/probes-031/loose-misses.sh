#!/usr/bin/env bash
# The random draws' unlearning misses on loosely fitted models, rebuilt from their draw files (BENCHMARKS.md,
# "Unlearning on loosely fitted models"): ddm run as the draws ran it (--calibrate never), then the 4-group removal
# by the relabelled epoch and by the synsets' step, each against exact retraining in 3 data orders (cached).
set -e
D=${DDM:-.venv/bin/ddm}
R=${ROOT:-runs/uf}
run() { local ws=$1 groups=$2; shift 2
  [ -f "$R/$ws/config.json" ] || $D run -w "$R/$ws" -q --calibrate never "$@" > /dev/null
  for m in relabel step; do $D unlearn -w "$R/$ws" -q --groups "$groups" --method $m --verify 3 | grep "test accuracy  *exact"; done
}
# random seed 0 #1
run s0_1 4,8,36,48 --dataset digits --set model.name=mlp --set model.width=128 --set model.depth=3 --set train.optimizer=sgd --set train.momentum=0.9 --set train.lr=0.00628 --set train.weight_decay=0.0 --set train.schedule=cosine --set train.epochs=20 --set train.batch_size=128 --set cluster.method=sequential --set cluster.num_groups=50 --set data.seed=323 --set model.seed=625 --set train.seed=655 --set cluster.seed=934
# random seed 1 #1
run s1_1 3,5,12,48 --dataset digits --set model.name=mlp --set model.width=128 --set model.depth=3 --set train.optimizer=sgd --set train.momentum=0.5 --set train.lr=0.0398 --set train.weight_decay=0.0 --set train.schedule=constant --set train.epochs=5 --set train.batch_size=128 --set cluster.per_class=5 --set data.seed=702 --set model.seed=221 --set train.seed=992 --set cluster.seed=432
# random seed 1 #7
run s1_7 1,5,9,18 --dataset fashion-mnist --set data.train_size=3000 --set data.test_size=1000 --set model.name=mlp --set model.width=64 --set model.depth=3 --set train.optimizer=sgd --set train.momentum=0.5 --set train.lr=0.0363 --set train.weight_decay=0.0005 --set train.schedule=cosine --set train.epochs=5 --set train.batch_size=128 --set cluster.method=sequential --set cluster.num_groups=20 --set data.seed=463 --set model.seed=14 --set train.seed=772 --set cluster.seed=773
# random seed 2 #8
run s2_8 7,9,24,34 --dataset digits --set model.name=convnet --set model.width=16 --set model.norm=groupnorm --set train.optimizer=sgd --set train.momentum=0.5 --set train.lr=0.00505 --set train.weight_decay=0.0005 --set train.schedule=constant --set train.epochs=15 --set train.batch_size=64 --set cluster.per_class=4 --set data.seed=459 --set model.seed=564 --set train.seed=784 --set cluster.seed=619
# random seed 2 #11
run s2_11 15,33,34,40 --dataset digits --set model.name=mlp --set model.width=128 --set model.depth=1 --set train.optimizer=sgd --set train.momentum=0.5 --set train.lr=0.00741 --set train.weight_decay=0.0001 --set train.schedule=constant --set train.epochs=5 --set train.batch_size=32 --set cluster.per_class=5 --set data.seed=75 --set model.seed=256 --set train.seed=82 --set cluster.seed=605
# the wide draws' workspaces (runs/wide3/08, runs/wide4/00) come from `make bench-random`:
#   ddm unlearn -w runs/wide3/08 --groups 0,1,4,7 --method {relabel,step} --verify 3
#   ddm unlearn -w runs/wide4/00 --groups 13,14,22,28 --method {relabel,step} --verify 3
