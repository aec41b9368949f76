"""A diagnostic on the two-groups-per-class probe (probe.sh; measured once, used for no choice): from DDM's unlearned
model, ascend the removed training samples' loss (and descend the kept ones', full batch, SGD at 0.01) over the last
layer ("head") or every parameter ("all") until the removed samples' accuracy reaches exact retraining's (the target
data order): an oracle that knows how far retraining forgets them. Does that land on exact retraining's test accuracy?

    .venv/bin/python benchmarks/results/probes-024/oracle.py runs/p24/mlp20 head
"""
import sys, torch, torch.nn.functional as F, copy
from ddm.cli.common import load_data
from ddm.pipeline import DistilledDatamodel
from ddm.distill.head import Head
from ddm.evaluation.retrain import RetrainCache
torch.manual_seed(0)
ws = sys.argv[1]; scope = sys.argv[2] if len(sys.argv) > 2 else "head"
DRAWS = [[15, 5, 9, 6], [13, 8, 17, 7], [15, 11, 13, 16], [19, 6, 9, 10], [16, 2, 6, 14], [4, 17, 6, 13]]
dm = DistilledDatamodel(ws).load(); data = load_data(dm.config.data, ws); Fi = dm.fitted()
cache = RetrainCache(dm.ws.path("check", "references-retrain"), Fi.model, Fi.trajectory.checkpoint(0), data.train,
                     Fi.groups, dm.config.train, torch.cat([data.test.x, data.train.x]), threads=dm.training_threads())
n = len(data.test)
def acc(m, x, y):
    with torch.no_grad(): return float((m(x).argmax(1) == y).float().mean())
for rem in DRAWS:
    gone = torch.isin(Fi.groups.assignment, torch.as_tensor(rem))
    ex = cache.get(rem); ex_t = float((ex[:n].argmax(1) == data.test.y).float().mean())
    ex_r = float((ex[n:][gone].argmax(1) == data.train.y[gone]).float().mean())
    m = dm.unlearn(rem, name="oracle"); m.eval()
    params = list(Head.of(m).linear.parameters()) if scope == "head" else list(m.parameters())
    opt = torch.optim.SGD(params, lr=0.01)
    xr, yr = data.train.x[gone], data.train.y[gone]; xk, yk = data.train.x[~gone], data.train.y[~gone]
    line = []
    for it in range(400):
        ra = acc(m, xr, yr)
        if ra <= ex_r: break
        loss = -F.cross_entropy(m(xr), yr) + F.cross_entropy(m(xk), yk)
        opt.zero_grad(); loss.backward(); opt.step()
    print(rem, f"exact test {100*ex_t:.1f} removed {100*ex_r:.1f} | oracle-{scope} after {it} steps: test {100*acc(m, data.test.x, data.test.y):.1f} removed {100*acc(m, xr, yr):.1f} kept {100*acc(m, xk, yk):.1f}", flush=True)
