# second match_at test: six new ten-class probes (never run before), seeds 201-211
set -u
P="--preset demo -q"
FM="--dataset fashion-mnist --set data.train_size=3000 --set data.test_size=1000"
mk() { ws=$1; shift; .venv/bin/ddm run -w runs/$ws $P "$@" > runs/mac/$ws.run.log 2>&1; .venv/bin/ddm check -w runs/$ws -q > runs/$ws.check.txt 2>&1; echo "$ws done rc=$?"; }
case $1 in
a)
mk u37 --set model.name=mlp --set model.width=256 --set model.depth=2 --set train.momentum=0.9 --set train.lr=0.02 --set cluster.per_class=4 --set model.seed=201 --set train.seed=201
mk u39 --set model.name=resnet --set model.width=16 --set train.optimizer=adamw --set train.lr=0.002 --set train.weight_decay=0.01 --set cluster.per_class=4 --set model.seed=205 --set train.seed=205
mk u41 --set model.norm=groupnorm --set model.width=16 --set train.momentum=0.9 --set train.lr=0.01 --set train.weight_decay=0.0005 --set cluster.per_class=3 --set model.seed=209 --set train.seed=209
;;
b)
mk u38 $FM --set model.width=24 --set model.depth=2 --set train.optimizer=adam --set train.lr=0.002 --set cluster.per_class=5 --set model.seed=203 --set train.seed=203
mk u40 $FM --set model.name=mlp --set model.width=192 --set model.depth=3 --set train.lr=0.05 --set train.schedule=cosine --set cluster.per_class=6 --set model.seed=207 --set train.seed=207
mk u42 $FM --set model.name=alexnet --set model.width=16 --set train.momentum=0.9 --set train.lr=0.01 --set cluster.per_class=4 --set model.seed=211 --set train.seed=211
;;
esac
