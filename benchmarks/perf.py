"""`make bench-perf`: what each stage costs, in units of one training run (T), with peak memory, the
throughput each stage reaches against training's own forward+backward, and how online and offline cost
grow with the training-set size N and the number of groups K.

Each configuration starts from an empty workspace (its folder under ``--root`` is deleted first), and each stage
runs in its own process (one thread), so its peak resident memory is its own. Stages:
training (T), head distillation (statistics, matching and health check), a first attribution of 20 test
targets and a second one of 20 others (the default Newton emulation), unlearning 4 groups, and one exact
retrain without a random half of the groups (what one perturbation of the attribution replaces).

    python benchmarks/perf.py --out benchmarks/results/perf          # both datasets + growth
    python benchmarks/perf.py --quick --out /tmp/perf                 # a small run (tests)
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

FMNIST = ["data.name=fashion-mnist", "data.train_size=10000", "data.test_size=2000", "model.width=16",
          "train.epochs=5", "train.lr=0.05"]
CONFIGS = {"digits (demo)": [], "fashion-mnist 10k": FMNIST}


# what each stage writes to the workspace: removed from a scratch copy before the stage's FLOPs are counted there
_OUTPUTS = {"train": ["train"], "distill": ["synset"], "attribute": ["emulation", "attributions/attribute"],
            "attribute-again": ["emulation", "attributions/attribute-again"], "unlearn": ["unlearned"],
            "retrain-half": []}


def _work(ddm: Any, dm: Any, cfg: Any, data: Any, stage: str) -> tuple[float, dict[str, Any]]:
    """Run one stage on ``dm``'s workspace: (its seconds, what the tables need besides)."""
    import torch

    from ddm.emulate.perturbations import sample_perturbations
    from ddm.train.loop import train_model

    t0 = time.perf_counter()
    extra: dict[str, Any] = {}
    if stage in ("train", "distill"):
        dm.fit(ddm.models.build(cfg.model, data), data.train, until="train" if stage == "train" else "synset")
        seconds = dm.ws.require("train" if stage == "train" else "synset")["seconds"]
        if stage == "distill":
            info = dm.ws.require("synset")
            extra = {"steps": info.get("steps"), "K": dm.groups.num_groups, "ipc": dm.synset.ipc,
                     "N": len(data.train), "epochs": cfg.train.epochs}
        return seconds, extra
    dm.load()
    if stage.startswith("attribute"):
        rows = slice(0, 20) if stage == "attribute" else slice(20, 40)
        a = dm.attribute(data.test[rows], "dist2", name=stage)
        return time.perf_counter() - t0, {"perturbations": a.meta["perturbations"], "K": dm.groups.num_groups}
    if stage == "unlearn":
        dm.unlearn([0, 1, 2, 3], name="perf")
        return time.perf_counter() - t0, {}
    # one exact retrain without a random half of the groups
    keep = sample_perturbations(dm.groups.num_groups, 1, 0.5, seed=1)[0]
    rows_kept = torch.cat([dm.groups.members(k) for k in torch.nonzero(keep).flatten().tolist()])
    net = ddm.models.build(cfg.model, data)
    # timed as the training stage is (the trajectory's own clock, after one-time set-up)
    seconds = train_model(net, data.train[rows_kept], cfg.train).seconds
    return seconds, {"kept_fraction": len(rows_kept) / len(data.train)}


def _stage(q: Any, root: str, sets: list[str], stage: str, count: bool) -> None:
    import tempfile

    import torch

    torch.set_num_threads(1)
    import ddm
    from ddm import progress

    progress.set_enabled(False)
    # the first optimizer a process builds imports torch's compiler stack (about 1.3 s, once per process); training's
    # clock starts after building its optimizer, so every stage here is timed after that one-time import too
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])
    cfg = ddm.presets.demo().with_overrides([*sets, "hierarchical=false"])
    data = ddm.data.load(cfg.data)
    if not count:
        seconds, extra = _work(ddm, ddm.DistilledDatamodel(root, cfg), cfg, data, stage)
        q.put({"stage": stage, "seconds": float(seconds),
               "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, **extra})
        return
    # the stage's floating-point operations (torch's FlopCounterMode: matrix products and convolutions, forward
    # and backward; eigendecompositions and elementwise work are not counted), on a scratch copy of the workspace
    # without the stage's outputs, so that nothing is served from the cache
    from torch.utils.flop_counter import FlopCounterMode

    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp) / "ws"
        shutil.copytree(root, scratch)
        for out in _OUTPUTS[stage]:
            shutil.rmtree(scratch / out, ignore_errors=True)
        counter = FlopCounterMode(display=False)
        with counter:
            _work(ddm, ddm.DistilledDatamodel(scratch, cfg), cfg, data, stage)
    q.put({"stage": stage, "flops": float(counter.get_total_flops())})


def run_stage(root: Path, sets: list[str], stage: str, count: bool = False) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_stage, args=(q, str(root), sets, stage, count))
    p.start()
    out = q.get()
    p.join()
    return out


def _fresh(folder: Path) -> Path:
    """An empty workspace: a stage cached by an earlier run would report the seconds of the code that made it."""
    shutil.rmtree(folder, ignore_errors=True)
    return folder


STAGES = ("train", "distill", "attribute", "attribute-again", "unlearn", "retrain-half")


def profile(root: Path, name: str, sets: list[str], repeats: int = 3) -> dict[str, Any]:
    """Every stage ``repeats`` times, each repeat from an empty workspace (median and range of the seconds), then
    each stage's FLOPs counted once, untimed; rate = FLOPs / median seconds, against training's rate."""
    runs = []
    _fresh(root)
    for r in range(repeats):
        folder = _fresh(root / f"repeat-{r}")
        runs.append({s: run_stage(folder, sets, s) for s in STAGES})
    res: dict[str, Any] = {}
    for s in STAGES:
        sec = [run[s]["seconds"] for run in runs]
        res[s] = {**runs[0][s], "seconds": float(np.median(sec)), "seconds_all": sec,
                  "peak_mib": max(run[s]["peak_mib"] for run in runs)}
        res[s]["flops"] = run_stage(root / "repeat-0", sets, s, count=True)["flops"]
    T = res["train"]["seconds"]
    train_rate = res["train"]["flops"] / T
    ratio = [run["distill"]["seconds"] / run["train"]["seconds"] for run in runs]
    return {"config": name, "stages": res, "T": T, "repeats": repeats,
            "distill_T": float(np.median(ratio)), "distill_T_range": [min(ratio), max(ratio)],
            "flop_rate": {s: res[s]["flops"] / res[s]["seconds"] / train_rate for s in STAGES},
            "online_speedup": res["attribute"]["perturbations"] * res["retrain-half"]["seconds"]
            / res["attribute"]["seconds"]}


def growth(root: Path, sets: list[str], key: str, values: list[int]) -> dict[str, Any]:
    pts = []
    for v in values:
        extra = [f"cluster.per_class={v}"] if key == "K" else [f"data.train_size={v}"]
        folder = _fresh(root / f"{key}{v}")
        tr = run_stage(folder, sets + extra, "train")
        dist = run_stage(folder, sets + extra, "distill")
        att = run_stage(folder, sets + extra, "attribute")
        half = run_stage(folder, sets + extra, "retrain-half")
        K = att["K"]
        pts.append({key: K if key == "K" else v, "train_s": tr["seconds"], "distill_s": dist["seconds"],
                    "attribute_s": att["seconds"], "retrain_half_s": half["seconds"],
                    # what a datamodel fitted on exact retrains needs at least: 2 K half-data retrains
                    "speedup_online": 2 * K * half["seconds"] / att["seconds"],
                    "speedup_with_distill": 2 * K * half["seconds"] / (att["seconds"] + dist["seconds"]),
                    "peak_mib": max(dist["peak_mib"], att["peak_mib"], tr["peak_mib"])})
    x = np.log([p[key] for p in pts])
    slope = {s: float(np.polyfit(x, np.log([p[s] for p in pts]), 1)[0]) for s in ("distill_s", "attribute_s",
                                                                                   "train_s")}
    return {"key": key, "points": pts, "exponent": slope}


def markdown(results: list[dict[str, Any]], grow: list[dict[str, Any]], argv: list[str]) -> str:
    lines = ["# Stage costs (`make bench-perf`)", "",
             f"Command: `python benchmarks/perf.py {' '.join(argv)}`. One process and one thread per stage; "
             "T = that configuration's training time; peak = the stage process's peak resident memory."]
    if results:
        lines += ["", f"Each stage ran {results[0]['repeats']} times, each time from an empty workspace: the median "
                  "seconds (range in the JSON); distillation in T is the median of the repeats' own ratios, with "
                  "their range. FLOP rate: the stage's FLOPs (torch's FlopCounterMode: matrix products and "
                  "convolutions, forward and backward; eigendecompositions and elementwise work uncounted) per "
                  "second, against training's (a plain forward+backward of the same model and batch)."]
        lines += ["", "| stage | " + " | ".join(r["config"] for r in results) + " |", "|---|" + "---|" * len(results)]
        for s in STAGES:
            cells = [f"{r['stages'][s]['seconds']:.2f} s = {r['stages'][s]['seconds'] / r['T']:.2f} T, "
                     f"{r['stages'][s]['peak_mib']:.0f} MiB, {r['stages'][s]['flops'] / 1e9:.1f} GFLOP "
                     f"({100 * r['flop_rate'][s]:.0f} % of training's rate)" for r in results]
            lines.append(f"| {s} | " + " | ".join(cells) + " |")
        lines += ["", "| | " + " | ".join(r["config"] for r in results) + " |", "|---|" + "---|" * len(results),
                  "| distillation (T), median [range] | " + " | ".join(
                      f"{r['distill_T']:.2f} [{r['distill_T_range'][0]:.2f}-{r['distill_T_range'][1]:.2f}]"
                      for r in results) + " |",
                  "| online speedup: perturbations x one half-data retrain / first attribution | "
                  + " | ".join(f"{r['online_speedup']:,.0f}x" for r in results) + " |"]
    for g in grow:
        lines += ["", f"Growth in {g['key']} (" + ", ".join(f"{k} ~ {g['key']}^{v:.2f}" for k, v in
                                                         g["exponent"].items()) + "):", "",
                  f"| {g['key']} | train s | distill s | attribute s | one half-data retrain s | speedup online "
                  "(2 K retrains) | speedup incl. distillation | peak MiB |", "|---|---|---|---|---|---|---|---|"]
        for p in g["points"]:
            lines.append(f"| {p[g['key']]} | {p['train_s']:.2f} | {p['distill_s']:.2f} | {p['attribute_s']:.2f} | "
                         f"{p.get('retrain_half_s', float('nan')):.2f} | {p.get('speedup_online', float('nan')):,.0f}x"
                         f" | {p.get('speedup_with_distill', float('nan')):,.1f}x | {p['peak_mib']:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default="runs/perf")
    p.add_argument("--out", default="benchmarks/results/perf")
    p.add_argument("--quick", action="store_true", help="the tiny preset's sizes only (seconds; for tests)")
    p.add_argument("--per-class", default="2,5,10,20,40", help="groups per class of the growth-in-K runs")
    p.add_argument("--sizes", default="1000,2000,5000,10000,20000",
                   help="training-set sizes of the growth-in-N runs ('' skips them)")
    p.add_argument("--growth-only", action="store_true", help="skip the per-stage table")
    p.add_argument("--repeats", type=int, default=3, help="runs of every stage in the per-stage table")
    args = p.parse_args()
    root = Path(args.root)
    if args.quick:
        configs = {"digits (tiny)": ["data.train_size=300", "data.test_size=60", "train.epochs=2",
                                     "distill.iterations=20", "emulate.num_perturbations=200"]}
        grows: list[tuple[str, list[int]]] = [("K", [1, 2])]
    else:
        configs = CONFIGS
        grows = [(k, [int(v) for v in values.split(",") if v]) for k, values in (("K", args.per_class),
                                                                              ("N", args.sizes))]
        grows = [(k, v) for k, v in grows if v]  # an empty list skips that growth
    repeats = 1 if args.quick else args.repeats
    results = [] if args.growth_only else [profile(root / n.split()[0], n, s, repeats) for n, s in configs.items()]
    base = next(iter(configs.values())) if args.quick else FMNIST
    grow = [growth(root / f"growth-{k}", base, k, v) for k, v in grows]
    from ddm.workspace import atomic_write_text

    text = markdown(results, grow, sys.argv[1:])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out.with_suffix(".md"), text)
    atomic_write_text(out.with_suffix(".json"), json.dumps({"stages": results, "growth": grow}, indent=1))
    print(text)


if __name__ == "__main__":
    main()
