"""Unlearning on models that fit their training data loosely: the relabelled epoch against the synsets' step.

Why. On the random draws, every 4-group unlearning that missed exact retraining by more than 5 points was a model that
fits its training data loosely (``ddm.health.fit_to_training``: training cross-entropy above half a uniform guess's).
On two of them (random seed 1 #1, wide seed 4 #0) the removal left some classes with 35-80 % of their training
samples; exact retraining, which stops as early as the model did, then lost those classes (test accuracy 65.6 -> 44.4
and 80.3 -> 64.0 %), the synsets' step lost them too (gaps -0.6 and -1.5 points), and ``ddm unlearn``'s default, one
relabelled epoch from theta_tau, kept them (+11.7 and +16.9): one more epoch of training on the kept samples of a
thinned class teaches it further instead. Where no class was thinned the relabelled epoch was the closer one
(random seed 0 #1: -0.4 against the step's -3.1; wide seed 3 #8, whole classes removed: -0.6 against +3.9).

The rule, written before this test ran: **where the model fits loosely (ratio above ``LOOSE_FIT`` = 0.5) and the
removal leaves some class with more than none and less than 80 % of its training samples, ``ddm unlearn`` takes the
synsets' step instead of the relabelled epoch.** It passes if, on the draws below where it fires, the step is within
3 points of exact retraining (the mean of 3 data orders) on at least as many draws as the relabelled epoch and its
mean absolute gap is lower. Where it does not fire it changes nothing.

The draws (``random.Random(--seed)``, before anything runs; written to ``<root>/draws.json``): configurations likely to
stop early, as the loose random draws did: digits (all 1,437 training images) or Fashion-MNIST (2,000 / 1,000); an MLP
(2 in 3; width 64, 128 or 256, 1-3 hidden layers) or a ConvNet (width 16 or 32, the library's depth); SGD with
momentum 0, 0.5 or 0.9 at lr 0.003-0.03 (log-uniform) or (1 in 4) Adam at 1e-4 to 5e-4; 2-5 epochs, a constant or
cosine schedule, batch 64 or 128; k-means with 3-6 groups per class. Each is run with ``ddm run --calibrate never``;
those that fit loosely are unlearned twice: 4 random groups, and half (rounded up) of one random class's groups, each
with ``ddm unlearn --method relabel --verify 3`` and ``--method step --verify 3`` (the same cached retrains).

    python benchmarks/unlearn_loose.py --seed 0 -n 10 --root runs/loose --out benchmarks/results/unlearn-loose

``--fit-band LO HI`` (after 0.31) unlearns the draws whose fit ratio lies in [LO, HI) instead, the same two removals
each, to ask whether the rule's threshold should come down. Written before that run: **the threshold would move to
0.3 if, on the removals that thin a class at a fit of 0.3-0.5, the step is within 3 points on at least as many as the
relabelled epoch and its mean absolute gap is lower; a fresh draw would then have to agree before the default
changes.** The motivating miss (random seed 2 #11, fit 0.35, the epoch +5.6) is not among these draws.

    python benchmarks/unlearn_loose.py --seed 0 -n 14 --root runs/loose --fit-band 0.2 0.5 \
        --out benchmarks/results/unlearn-loose-band
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_report  # noqa: E402
from random_probes import step  # noqa: E402

from ddm.workspace import atomic_write_text  # noqa: E402

LOOSE = 0.5  # ddm.health.LOOSE_FIT when the rule was written
THIN = 0.8  # a class left with less than this share (and more than none) of its training samples is thinned


def draw(rng: random.Random) -> dict[str, Any]:
    dataset = rng.choice(["digits", "fashion-mnist"])
    s: dict[str, Any] = {}
    if dataset == "fashion-mnist":
        s |= {"data.train_size": 2000, "data.test_size": 1000}
    if rng.random() < 2 / 3:
        s |= {"model.name": "mlp", "model.width": rng.choice([64, 128, 256]), "model.depth": rng.randint(1, 3)}
    else:
        s |= {"model.name": "convnet", "model.width": rng.choice([16, 32])}
    if rng.random() < 0.25:
        s |= {"train.optimizer": "adam", "train.lr": round(math.exp(rng.uniform(math.log(1e-4), math.log(5e-4))), 6)}
    else:
        s |= {"train.optimizer": "sgd", "train.momentum": rng.choice([0.0, 0.5, 0.9]),
              "train.lr": round(math.exp(rng.uniform(math.log(0.003), math.log(0.03))), 5)}
    s |= {"train.schedule": rng.choice(["constant", "cosine"]), "train.epochs": rng.randint(2, 5),
          "train.batch_size": rng.choice([64, 128]), "cluster.per_class": rng.randint(3, 6)}
    s |= {f"{k}.seed": rng.randrange(1000) for k in ("data", "model", "train", "cluster")}
    return {"dataset": dataset, "set": s}


def draws(root: Path, n: int, seed: int,
          drawer: Callable[[random.Random], dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """``n`` configurations from ``drawer`` (default :func:`draw`) seeded by ``seed``, kept in ``<root>/draws.json``."""
    rng = random.Random(seed)
    drawn = [(drawer or draw)(rng) for _ in range(n)]
    path = root / "draws.json"
    if path.exists():
        stored = json.loads(path.read_text())
        if stored["seed"] != seed or stored["draws"][: min(n, len(stored["draws"]))] != drawn[: len(stored["draws"])]:
            sys.exit(f"{path} holds another draw; use another --root")
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({"seed": seed, "draws": drawn}, indent=1))
    return drawn


def _groups(ws: Path) -> Any:
    from ddm.cluster.groups import Groups
    from ddm.workspace import load_json, load_tensors

    method = load_json(ws / "groups" / "stage.json")["config"]["method"]
    return Groups.from_tensors(load_tensors(ws / "groups" / "groups.safetensors"), method)


def removals(ws: Path, i: int, seed: int) -> dict[str, list[int]]:
    """The two removals of draw ``i``: 4 random groups, and half (rounded up) of one random class's groups."""
    grp = _groups(ws)
    r = random.Random(seed * 1000 + i)
    labels = grp.labels.tolist()
    cls = r.randrange(int(max(labels)) + 1)
    own = [k for k, c in enumerate(labels) if c == cls]
    return {"random": sorted(r.sample(range(grp.num_groups), 4)),
            "thin": sorted(r.sample(own, math.ceil(len(own) / 2)))}


def kept_shares(ws: Path, groups: list[int]) -> list[float]:
    """Each class's share of its training samples that the removal of ``groups`` keeps."""
    total, kept = _groups(ws).class_sizes(groups)
    return [float(k) / float(t) if t else 1.0 for k, t in zip(kept.tolist(), total.tolist(), strict=True)]


def thins(shares: list[float]) -> bool:
    """Whether some class keeps more than none and less than ``THIN`` of its training samples (0.31's rule's second
    half; ``kept_shares``)."""
    return any(0 < s < THIN for s in shares)


def run(root: Path, cfgs: list[dict[str, Any]], seed: int, ddm: str,
        band: tuple[float, float] | None = None) -> list[dict[str, Any]]:
    rows = []
    for i, c in enumerate(cfgs):
        ws = root / f"{i:02d}"
        print(f"[{i}] {c['dataset']} {c['set']}", flush=True)
        sets = [a for k, v in c["set"].items() for a in ("--set", f"{k}={v}")]
        r = step(ws, "run", ["run", "--dataset", c["dataset"], *sets, "--calibrate", "never"], ddm)
        if not r or r["rc"]:
            rows.append({"i": i, "config": c, "failed": "run"})
            continue
        model = r["out"]["model"]
        fit = (model.get("training_fit") or {}).get("ratio")
        measured = (fit is not None and fit > LOOSE) if band is None else (
            fit is not None and band[0] <= fit < band[1])
        row: dict[str, Any] = {"i": i, "config": c, "test_accuracy": model["test_accuracy"], "fit": fit,
                               "loose": measured, "removals": {}}
        if row["loose"]:
            which = removals(ws, i, seed)
            for name, groups in which.items():
                g = ",".join(map(str, groups))
                got = {}
                for method in ("relabel", "step"):
                    d = step(ws, f"{name}-{method}", ["unlearn", "--groups", g, "--method", method, "--verify", "3",
                                                      "--name", f"{name}-{method}"], ddm)
                    if d and not d["rc"]:
                        v = d["out"]["verification"]
                        got[method] = {"gap": v["test_gap_points"], "test": v["unlearned"]["test_accuracy"],
                                       "removed": v["unlearned"]["removed_accuracy"],
                                       "fell_back": d["out"].get("fell_back") is not None}
                        got["exact"] = v["exact"]["test_accuracy"]
                        got["exact_removed"] = v["exact"]["removed_accuracy"]
                shares = kept_shares(ws, groups)
                fires = thins(shares)
                row["removals"][name] = {"groups": groups, "kept_shares": shares, "fires": fires, **got}
        rows.append(row)
    return rows


def render(rows: list[dict[str, Any]], out: str, seed: int, command: str,
           band: tuple[float, float] | None = None) -> None:
    lines = ["| # | configuration | test acc. % | fit | removal | thinned (kept share) | rule | relabelled epoch | "
             "the step | exact (3 orders) |", "|---|---|---|---|---|---|---|---|---|---|"]
    tally: dict[str, dict[str, list[float]]] = {"fires": {"relabel": [], "step": []},
                                                "silent": {"relabel": [], "step": []}}
    rule = "step" if band is None else "thins (the rule is silent below 0.5)"
    for r in rows:
        c = r["config"]
        desc = f"{c['dataset']} " + " ".join(f"{k.split('.')[-1]}={v}" for k, v in c["set"].items()
                                              if not k.endswith("seed"))
        if "failed" in r:
            lines.append(f"| {r['i']} | {desc} | failed: {r['failed']} | | | | | | | |")
            continue
        if not r["loose"]:
            fit = "–" if r["fit"] is None else f"{r['fit']:.2f}"
            where = "not loose" if band is None else "outside the band"
            lines.append(f"| {r['i']} | {desc} | {100 * r['test_accuracy']:.1f} | {fit} | {where} | | | | | |")
            continue
        for name, m in r["removals"].items():
            if "relabel" not in m or "step" not in m:
                continue
            thin = min((s for s in m["kept_shares"] if s > 0), default=1.0)
            ex = " / ".join(f"{100 * e:.1f}" for e in m["exact"])
            key = "fires" if m["fires"] else "silent"
            tally[key]["relabel"].append(m["relabel"]["gap"])
            tally[key]["step"].append(m["step"]["gap"])
            fb = " (guard: step)" if m["relabel"]["fell_back"] else ""
            lines.append(f"| {r['i']} | {desc} | {100 * r['test_accuracy']:.1f} | {r['fit']:.2f} | {name} "
                         f"{m['groups']} | {thin:.2f} | {rule if m['fires'] else '-'} | "
                         f"{m['relabel']['gap']:+.1f}{fb} | {m['step']['gap']:+.1f} | {ex} |")
    summary = []
    for key, t in tally.items():
        for method, gaps in t.items():
            if gaps:
                within = sum(abs(g) <= 3 for g in gaps)
                what = ("rule " + ("fires" if key == "fires" else "silent") if band is None
                        else ("thins a class" if key == "fires" else "thins none"))
                summary.append(f"* {what}, {method}: within 3 points on "
                               f"{within} of {len(gaps)}, mean |gap| {sum(map(abs, gaps)) / len(gaps):.2f}")
    title = ("Unlearning on loosely fitted models" if band is None
             else f"Unlearning on models whose fit ratio lies in [{band[0]:g}, {band[1]:g})")
    text = "\n".join([f"# {title} (seed {seed})", "", f"    {command}", "", *lines, "",
                      *summary, ""])
    write_report(out, text, {"seed": seed, "rows": rows, "tally": tally})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-n", type=int, default=10)
    ap.add_argument("--root", default="runs/loose")
    ap.add_argument("--out", default="benchmarks/results/unlearn-loose")
    ap.add_argument("--ddm", default=str(Path(sys.executable).parent / "ddm"))
    ap.add_argument("--fit-band", nargs=2, type=float, metavar=("LO", "HI"),
                    help="unlearn the draws whose fit ratio lies in [LO, HI) instead of those above 0.5")
    a = ap.parse_args()
    root = Path(a.root)
    cfgs = draws(root, a.n, a.seed)
    rows = run(root, cfgs, a.seed, a.ddm, (a.fit_band[0], a.fit_band[1]) if a.fit_band else None)
    band = (a.fit_band[0], a.fit_band[1]) if a.fit_band else None
    render(rows, a.out, a.seed, "python " + " ".join(sys.argv), band)


if __name__ == "__main__":
    main()
