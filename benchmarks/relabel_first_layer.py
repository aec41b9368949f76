"""Relabelling's neighbours taken in the trained MLP's first-layer pre-activations instead of the raw inputs (an
exploration for the team, used for no default).

Raw-input neighbours mislead where many inputs carry no signal (noise features of tabular data). The first layer of a
trained MLP, before its nonlinearity, is a linear projection that down-weights such inputs without collapsing a
removed mode onto its class as the final features do. For each 4-group draw: test accuracy minus the mean of exact
retraining's orders, for relabelled fine-tuning with the library's neighbours (raw inputs) and with these.

    python benchmarks/relabel_first_layer.py --seeds 3 \\
        --configs digits-mlp-K40-sgd,fmnist-mlp-K40-adam,fmnist-mlp-K40-sgd \\
        --workspaces 'runs/p25/tab@1,2,7,12;9,12,11,16;0,15,14,13;12,4,9,2;18,13,1,16;6,14,16,12;11,7,16,12' \\
        --out benchmarks/results/relabel-first-layer
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matrix as M  # noqa: E402
from _draws import four_group_draws, gap_row, parser, test_gap  # noqa: E402
from _results import write_report  # noqa: E402

from ddm import progress  # noqa: E402
from ddm.baselines.unlearners import relabelled_split, train_relabelled  # noqa: E402
from ddm.cli.common import load_data  # noqa: E402
from ddm.data.dataset import Split  # noqa: E402
from ddm.evaluation.check import verify_unlearning  # noqa: E402
from ddm.pipeline import DistilledDatamodel  # noqa: E402

READINGS = ("raw inputs", "first layer")


def first_layer(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    lin = next(m for m in model.modules() if isinstance(m, nn.Linear))
    with torch.no_grad():
        return lin(x.flatten(1).float())


def gaps(model: nn.Module, params: Any, train: Split, test: Split, keep: torch.Tensor, gone: list[int], cfg: Any,
         reference: float) -> dict[str, float]:
    out = {}
    for label, space in (("raw inputs", train.x.flatten(1).float()), ("first layer", first_layer(model, train.x))):
        m = train_relabelled(model, params, relabelled_split(train, keep, space=space)[0], cfg)
        out[label] = test_gap(m, test, gone, reference)
    return out


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--workspaces", default="", help="WS@a,b,c,d;e,f,g,h: a workspace's draws, scored by --verify 3's "
                                                     "cached retrains")
    args = ap.parse_args()
    torch.set_num_threads(2)
    progress.set_enabled(False)
    rows = []
    for name in filter(None, args.configs.split(",")):
        for s in args.seeds.split(","):
            cfg, data, _, dm, cache = M.open_run(Path(args.root), name, int(s))
            fit = dm.fitted()
            for d in four_group_draws(dm, cache, data, int(s)):
                g = gaps(fit.model, fit.trajectory.final, data.train, data.test, d.keep, d.gone, cfg.train,
                         d.reference)
                rows.append({"run": f"{name} seed {s}", "groups": d.groups, **g})
                print(rows[-1], flush=True)
    for spec in filter(None, args.workspaces.split(" ")):
        ws, _, given = spec.partition("@")
        dm = DistilledDatamodel(ws).load()
        data = load_data(dm.config.data, ws)
        fit = dm.fitted()
        for draw in ([int(g) for g in d.split(",")] for d in given.split(";")):
            keep = ~torch.isin(fit.groups.assignment, torch.as_tensor(draw))
            gone = sorted(set(range(int(data.num_classes))) - set(data.train.y[keep].tolist()))
            v = verify_unlearning(dm, data, draw, fit.model, 3)  # the cached retrains; the model is not scored
            g = gaps(fit.model, fit.trajectory.final, data.train, data.test, keep, gone, dm.config.train,
                     float(np.mean(v["exact"]["test_accuracy"])))
            rows.append({"run": ws, "groups": draw, **g})
            print(rows[-1], flush=True)
    lines = ["# Relabelling's neighbours in the first layer's pre-activations\n",
             "`python benchmarks/relabel_first_layer.py " + " ".join(sys.argv[1:]) + "`\n",
             "Gap = test accuracy minus the mean of exact retraining's orders (points).\n",
             "| runs | neighbours | within 3 | mean abs gap | mean gap |", "|---|---|---|---|---|"]
    for run in [*dict.fromkeys(r["run"] for r in rows), "all"]:
        sel = [r for r in rows if run in ("all", r["run"])]
        lines += [gap_row(f"{run} | {k}", [r[k] for r in sel]) for k in READINGS]
    write_report(args.out, "\n".join(lines) + "\n", rows)


if __name__ == "__main__":
    main()
