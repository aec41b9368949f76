"""One draw of a workspace: how often exact retraining (the retrains ``ddm unlearn --verify 3`` cached) gives the
removed samples that relabelling moves their own class or the class they are taught, and per class the test accuracy
of exact retraining, the relabelled epoch, fine-tuning on the rest, the synsets' step and the target.

    python benchmarks/results/probes-030/relabel_precision.py runs/u1/ws 17,2,20,26
"""

import glob
import sys

import torch

from ddm.baselines.unlearners import finetune_rest, knn_labels, relabelled_targets, train_relabelled
from ddm.cli.common import load_data
from ddm.evaluation.retrain import RetrainCache
from ddm.pipeline import DistilledDatamodel

torch.set_num_threads(2)
ws, draw = sys.argv[1], [int(x) for x in sys.argv[2].split(",")]
dm = DistilledDatamodel(ws).load()
data, F = load_data(dm.config.data, ws), dm.fitted()
keep = ~torch.isin(F.groups.assignment, torch.as_tensor(draw))
gone = torch.nonzero(~keep).flatten()
C, n_test = int(data.num_classes), len(data.test)
cache = RetrainCache(glob.glob(ws + "/check/unlearn-retrain-*")[0], F.model, F.trajectory.checkpoint(0), data.train,
                     F.groups, dm.config.train, torch.cat([data.test.x, data.train.x]), threads=dm.training_threads())
exact = [cache.get(draw, s) for s in (None, 1000, 1001)]
y = data.train.y[gone]
moved = knn_labels(data.train.x[gone], data.train.x[keep], data.train.y[keep], 5, agree=4)
other = (moved != y) & (moved >= 0)
print(f"removed {len(gone)}, relabelled {int(other.sum())}")
for i, e in enumerate(exact):
    p = e[n_test:][gone].argmax(1)
    print(f"order {i}: of the relabelled, exact retraining predicts their own class for "
          f"{float((p[other] == y[other]).float().mean()):.2f}, the class taught for "
          f"{float((p[other] == moved[other]).float().mean()):.2f}")
r = relabelled_targets(data.train, keep, C)
models = {"relabelled": train_relabelled(F.model, F.trajectory.final, r.split, dm.config.train, targets=r.targets),
          "rest": finetune_rest(F.model, F.trajectory.final, data.train, keep, dm.config.train),
          "step": dm.unlearn(draw, name="relabel-precision"), "target": F.model}
with torch.no_grad():
    pred = {k: m(data.test.x).argmax(1) for k, m in models.items()}
yt = data.test.y
print("class, share of its training samples removed, test accuracy: exact (3 orders)", *pred)
for c in range(C):
    m = yt == c
    share = float((~keep & (data.train.y == c)).sum() / (data.train.y == c).sum())
    print(c, f"{share:.2f}", [round(100 * float((e[:n_test][m].argmax(1) == c).float().mean())) for e in exact],
          *[round(100 * float((p[m] == c).float().mean())) for p in pred.values()])
