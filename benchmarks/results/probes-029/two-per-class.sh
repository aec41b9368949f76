# Two groups per class, where every 4-group removal thins a class (the regime where the bare majority over-forgot):
# two probes trained for 0.28's soft labels, measured once, used for no choice. Hard labels (--soft 0, the default of
# 0.24-0.27) and soft labels (the default since 0.28) on the same draws and retrains.
set -e
D=".venv/bin/ddm"
$D run -w runs/p31/gconv20 --preset demo --set model.norm=groupnorm --set train.lr=0.02 --set train.momentum=0.9 \
    --set cluster.per_class=2 --set model.seed=311 --set train.seed=311 -q --targets 0:1 > /dev/null
$D run -w runs/p31/fmlp20 --preset demo --dataset fashion-mnist --set data.train_size=3000 --set data.test_size=1000 \
    --set model.name=mlp --set model.width=64 --set model.depth=2 --set train.epochs=10 --set train.lr=0.05 \
    --set train.batch_size=64 --set cluster.per_class=2 --set model.seed=312 --set train.seed=312 -q --targets 0:1 > /dev/null
for soft in 0 10; do
  .venv/bin/python benchmarks/unlearn_relabel.py runs/p31/gconv20 runs/p31/fmlp20 --draw-seed 2029 --soft $soft \
      --out benchmarks/results/unlearn-relabel-two-per-class-soft$soft
done
