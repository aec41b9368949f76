"""How far a trained model fits its training data: the size of each sample's cross-entropy gradient on its label
(1 - p_true), its median, the share of the total held by the 10% largest, and the median logit margin, on stored
matrix workspaces (a diagnostic for ``distill.head_temperature``; BENCHMARKS.md, "A tempered cross-entropy").

    python benchmarks/margins.py
"""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matrix as M  # noqa: E402

import ddm  # noqa: E402

ROWS = [("digits-convnet-K100-sgd", 3), ("fmnist-mlp-K40-sgd", 3), ("digits-alexnet-K40-adam", 0),
        ("digits-mlp-wide-K40-adam", 0), ("digits-resnet-batchnorm-K40-momentum", 0), ("digits-resnet-K40-momentum", 0),
        ("digits-convnet-K40-momentum-wd", 0), ("digits-mlp-K40-sgd", 0), ("fmnist-convnet-K100-sgd", 0),
        ("fmnist-mlp-K40-adam", 0), ("digits-convnet-batchnorm-K40-momentum", 0), ("fmnist-convnet-d2-K40-adam", 0),
        ("digits-convnet-groupnorm-K100-momentum", 0), ("fmnist-mlp-K100-momentum", 0), ("digits-alexnet-K40-adam", 1),
        ("digits-alexnet-K40-adam", 2), ("digits-resnet-batchnorm-K40-momentum", 1),
        ("digits-resnet-batchnorm-K40-momentum", 2)]
for name, seed in ROWS:
    cfg, data = M.make_config(M.CONFIGS[name][0], seed, [])
    dm = ddm.DistilledDatamodel(f"runs/matrix-b/{name}/seed{seed}/ddm").load()
    with torch.no_grad():
        z = ddm.devices.predict(dm.model, data.train.x).double()
    p = z.softmax(-1)
    pt = p[torch.arange(len(z)), data.train.y]
    g = (1 - pt)  # size of the CE output gradient on the true class
    s = torch.sort(g, descending=True).values
    top = float(s[: len(s) // 10].sum() / s.sum())
    margin = z[torch.arange(len(z)), data.train.y] - z.scatter(1, data.train.y[:, None], -1e9).max(1).values
    acc = float((z.argmax(1) == data.train.y).double().mean())
    print(f"{name:40s} {seed} median 1-p {float(g.median()):.2e}  top10% share {top:.2f}  "
          f"median margin {float(margin.median()):.1f}  train acc {acc:.3f}")
