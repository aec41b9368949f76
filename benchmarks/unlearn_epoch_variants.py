"""Variants of the relabelled epoch on the random draws' unlearning misses (after 0.30; tried, none kept).

For workspaces of the random draws whose ``<ws>.unlearn.json`` holds a verified 4-group unlearning (``ddm unlearn
--verify 3 --json``, its retrains cached), each variant's test accuracy minus the mean of exact retraining's three
data orders, over two data orders of the epoch (the first is the default's own):

* ``relabel``: the default epoch from theta_tau (as ``ddm unlearn``; reproduces its gap on the first order);
* ``replay``: the same epoch from the checkpoint one epoch before theta_tau, at the rates the training's last epoch
  had: the training's length kept, its last epoch replayed without the removed samples;
* ``rewind``: the default epoch's displacement added at the recorded point where a retrain's shorter run would end:
  epoch tau (1 - f) (``rewind-const``, the synsets' step's rewind at a constant rate), or where the recorded run's
  cumulative cosine rate reaches 1 - f of its total (``rewind-cos``);
* ``warm-adam`` (Adam and AdamW only): the default epoch after 50 steps at rate 0 that fill the optimizer's moment
  estimates, where the default starts them at zero (whose first steps move every weight by about the rate).

    python benchmarks/unlearn_epoch_variants.py runs/uf/s1_1 runs/wide4/00 ... \
        --out benchmarks/results/unlearn-epoch-variants
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_report  # noqa: E402

from ddm.baselines import unlearners as U  # noqa: E402
from ddm.cli.common import load_data  # noqa: E402
from ddm.pipeline import DistilledDatamodel  # noqa: E402
from ddm.train.loop import make_optimizer  # noqa: E402
from ddm.unlearning import _partition, removed_fraction  # noqa: E402

WARM_STEPS = 50


def _accuracy(model: torch.nn.Module, split: Any) -> float:
    with torch.no_grad():
        return float((model(split.x).argmax(1) == split.y).float().mean())


def _cosine_point(share: float) -> float:
    """The fraction t of a cosine-annealed run whose cumulative rate, t + sin(pi t) / pi, is ``share`` of its total."""
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if mid + math.sin(math.pi * mid) / math.pi < share else (lo, mid)
    return lo


def epoch(net: torch.nn.Module, start: dict[str, torch.Tensor], split: Any, soft: torch.Tensor, cfg: Any, order: int,
          rates: list[float] | None = None, warm: int = 0) -> torch.nn.Module:
    """One pass over ``split`` with soft ``targets`` from ``start``: at ``rates`` per step where given, else at the
    training's schedule run over the pass (as the default epoch); ``warm`` steps at rate 0 first."""
    model = U.with_params(net, start)
    model.train()
    opt = make_optimizer(model, cfg)
    total = math.ceil(len(split) / cfg.batch_size)

    def loss(idx: torch.Tensor) -> torch.Tensor:
        z = model(split.x[idx])
        return F.cross_entropy(z, F.pad(soft[idx], (0, z.shape[1] - soft.shape[1])))

    if warm:
        for g in opt.param_groups:
            g["lr"] = 0.0
        for i, idx in enumerate(U._batches(len(split), cfg, 1000 + order)):
            if i >= warm:
                break
            opt.zero_grad()
            loss(idx).backward()
            opt.step()
    for s, idx in enumerate(U._batches(len(split), cfg, order)):
        rate = rates[s] if rates is not None else cfg.lr_at(s, total)
        for g in opt.param_groups:
            g["lr"] = rate
        opt.zero_grad()
        loss(idx).backward()
        opt.step()
    model.eval()
    return model


def variants(ws: str, orders: int = 2) -> dict[str, Any]:
    u = json.loads(Path(ws + ".unlearn.json").read_text())["out"]
    exact = u["verification"]["exact"]["test_accuracy"]
    target = sum(exact) / len(exact)
    dm = DistilledDatamodel(ws).load()
    data = load_data(dm.config.data, ws)
    cfg = dm.config.train
    grp, net, traj = _partition(dm, data.train, "groups")
    idx = torch.tensor(u["groups"])
    keep = ~torch.isin(grp.assignment, idx)
    r = U.relabelled_targets(data.train, keep, int(data.train.y.max()) + 1)
    split, soft = r.split, r.targets.float()
    steps = math.ceil(len(split) / cfg.batch_size)
    last = float(traj.epochs[-1])
    f = removed_fraction(grp.sizes(), idx)
    j = max(i for i, e in enumerate(traj.epochs) if e <= last - 1)
    e0 = float(traj.epochs[j])
    replay_rates = [cfg.lr_at(round((e0 + (last - e0) * s / steps) * 1000), round(last * 1000)) for s in range(steps)]
    out: dict[str, Any] = {"workspace": ws, "optimizer": cfg.optimizer, "schedule": cfg.schedule,
                           "groups": u["groups"], "fraction_removed": f, "exact": exact,
                           "reported_gap": u["verification"]["test_gap_points"], "gaps": {}}

    def gap(model: torch.nn.Module) -> float:
        return 100 * (_accuracy(model, data.test) - target)

    for o in range(orders):
        base = epoch(net, traj.final, split, soft, cfg, o)
        got = {"relabel": gap(base),
               "replay": gap(epoch(net, traj.checkpoint(j), split, soft, cfg, o,
                                   replay_rates if cfg.schedule != "constant" else None))}
        for name, at in (("rewind-const", last * (1 - f)), ("rewind-cos", last * _cosine_point(1 - f))):
            point = traj.at_epoch(at)
            if point is None:
                continue
            moved = U.with_params(net, {n: p.detach().clone() for n, p in base.named_parameters()})
            moved.load_state_dict(base.state_dict())
            with torch.no_grad():
                for n, p in moved.named_parameters():
                    p.add_(point[n] - traj.final[n])
                for n, b in moved.named_buffers():
                    if n in point:
                        b.copy_(point[n])
            moved.eval()
            got[name] = gap(moved)
        if cfg.optimizer in ("adam", "adamw"):
            got["warm-adam"] = gap(epoch(net, traj.final, split, soft, cfg, o, warm=WARM_STEPS))
        for k, v in got.items():
            out["gaps"].setdefault(k, []).append(v)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("workspaces", nargs="+")
    ap.add_argument("--out", default="benchmarks/results/unlearn-epoch-variants")
    a = ap.parse_args()
    torch.set_num_threads(1)
    rows = [variants(ws) for ws in a.workspaces]
    names = ["relabel", "replay", "rewind-const", "rewind-cos", "warm-adam"]
    lines = ["| workspace | optimizer, schedule | removed | exact % | " + " | ".join(names) + " |",
             "|---|---|---|---|" + "---|" * len(names)]
    for r in rows:
        cells = [" / ".join(f"{g:+.1f}" for g in r["gaps"][n]) if n in r["gaps"] else "–" for n in names]
        lines.append(f"| {r['workspace']} | {r['optimizer']}, {r['schedule']} | {100 * r['fraction_removed']:.0f} % "
                     f"| {100 * sum(r['exact']) / len(r['exact']):.1f} | " + " | ".join(cells) + " |")
    text = "\n".join(["# Variants of the relabelled epoch (gap to exact retraining, points; two epoch orders)", "",
                      "    python " + " ".join(sys.argv), "", *lines, ""])
    write_report(a.out, text, rows)


if __name__ == "__main__":
    main()
