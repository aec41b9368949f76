"""GPU benchmark (issue "Real models on real hardware"): ResNet-18 (GroupNorm) on Fashion-MNIST 60,000, padded to
32x32 and repeated to 3 channels, and on CIFAR-10 when its files are present.

For each dataset: train the target (trajectory recorded), distil the head synsets, attribute test targets, and
retrain exactly without random halves of the groups for a small LDS check; wall time and peak memory of every
stage, and the online speedup over the 2 K half-data retrains a datamodel fitted from retraining would need
(priced at the measured retrain time). Runs unchanged on a CUDA machine (``--device auto`` picks it);
``--smoke`` is a reduced size that runs on a CPU in under a minute (``tests/test_bench_gpu.py``).

    python benchmarks/gpu.py --out benchmarks/results/gpu                     # the full run (a GPU)
    python benchmarks/gpu.py --smoke --out benchmarks/results/gpu-smoke       # the reduced run (any machine)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

import ddm
from ddm import devices, progress
from ddm.config import DataConfig
from ddm.emulate.perturbations import sample_perturbations
from ddm.evaluation.metrics import lds
from ddm.evaluation.retrain import RetrainCache
from ddm.exceptions import DDMError
from ddm.objectives.influence import true_label_loss
from ddm.train.loop import accuracy
from ddm.workspace import atomic_write_text

#: (full, smoke) sizes
SIZES = {
    "train_size": (None, 240), "test_size": (None, 60), "width": (64, 8), "depth": (4, 2), "epochs": (10, 2),
    "per_class": (10, 2), "subsets": (8, 3), "targets": (100, 10), "batch_size": (128, 32),
}


def as_rgb32(data: ddm.data.Dataset) -> ddm.data.Dataset:
    """Grey 28x28 images padded to 32x32 and repeated to 3 channels (CIFAR's shape); other data unchanged."""
    if data.image_shape[0] == 3 and data.image_shape[1:] == (32, 32):
        return data

    def conv(s: ddm.data.Split) -> ddm.data.Split:
        h, w = s.x.shape[2:]
        x = F.pad(s.x, ((32 - w) // 2, (32 - w + 1) // 2, (32 - h) // 2, (32 - h + 1) // 2),
                  value=float(s.x.min()))  # the normalised background
        return ddm.data.Split(x.repeat(1, 3 // x.shape[1], 1, 1), s.y, s.index)

    return dataclasses.replace(data, train=conv(data.train), test=conv(data.test), mean=data.mean * 3,
                               std=data.std * 3)


def peak_memory(dev: torch.device) -> dict[str, float]:
    out = {"host_max_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}
    if dev.type == "cuda":
        out["device_peak_gib"] = torch.cuda.max_memory_allocated(dev) / 2**30
    return out


def stage(dev: torch.device, fn: Any) -> tuple[Any, float]:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    t0 = time.perf_counter()
    out = fn()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    return out, time.perf_counter() - t0


def run_dataset(name: str, args: argparse.Namespace, size: dict[str, Any]) -> dict[str, Any]:
    data_cfg = DataConfig(name=name, data_dir=args.cifar_dir if name == "cifar10" else None,
                          train_size=size["train_size"], test_size=size["test_size"])
    data = as_rgb32(ddm.data.load(data_cfg))
    cfg = ddm.presets.demo().with_overrides([
        f"data.name={name}", "model.name=resnet", f"model.width={size['width']}", f"model.depth={size['depth']}",
        f"train.epochs={size['epochs']}", "train.lr=0.05", "train.momentum=0.9",
        f"train.batch_size={size['batch_size']}", f"cluster.per_class={size['per_class']}", "hierarchical=false",
        f"device={args.device}"])
    dev = devices.resolve(cfg.device)
    folder = Path(args.root) / name
    out: dict[str, Any] = {"dataset": data.summary(), "device": str(dev), "seconds": {}}
    dm = ddm.DistilledDatamodel(folder / "ddm", cfg)
    model = ddm.models.build(cfg.model, data)
    out["parameters"] = sum(p.numel() for p in model.parameters())
    _, out["seconds"]["train + groups + distill"] = stage(dev, lambda: dm.fit(model, data.train))
    out["seconds"]["train"] = float(dm.ws.require("train").get("seconds", 0.0))
    out["seconds"]["distill"] = float(dm.ws.require("synset").get("seconds", 0.0))
    out["test_accuracy"] = accuracy(dm.model, data.test)
    out["health"] = {k: v for k, v in dm.ws.require("synset")["health"].items() if not isinstance(v, list)}
    rows = torch.randperm(len(data.test), generator=torch.Generator().manual_seed(0))[:size["targets"]]
    targets = data.test[rows]
    attr, out["seconds"]["attribute"] = stage(dev, lambda: dm.attribute(targets, "dist2", name="gpu-bench"))
    out["memory"] = peak_memory(dev)
    K = dm.groups.num_groups
    cache = RetrainCache(folder / "retrain", dm.model, dm.trajectory.checkpoint(0), data.train, dm.groups, cfg.train,
                         targets.x, device=dev)
    keep = sample_perturbations(K, size["subsets"], 0.5, seed=1)
    t0 = time.perf_counter()
    logits = cache.many([torch.nonzero(~k).flatten().tolist() for k in keep], f"{name} retrains")
    out["seconds"]["exact retrains"] = time.perf_counter() - t0
    assert logits is not None
    actual = true_label_loss(logits, targets.y.expand(len(keep), -1))
    out["lds"] = lds(attr.predict(keep)[:, :, 0], actual)[0]
    same = (dm.groups.labels[None, :] == targets.y[:, None]).float()
    out["lds_same_class_trivial"] = lds(-(keep.float() @ same.T), actual)[0]
    half = float(np.mean([cache.seconds(torch.nonzero(~k).flatten().tolist()) for k in keep]))
    out["seconds"]["one half-data retrain"] = half
    out["speedup_online"] = 2 * K * half / max(out["seconds"]["attribute"], 1e-9)
    out["speedup_with_distill"] = 2 * K * half / (out["seconds"]["attribute"] + out["seconds"]["distill"])
    out["memory"] = peak_memory(dev)
    out["K"] = K
    for v in (out["lds"], out["speedup_online"]):
        if not np.isfinite(v):
            raise DDMError(f"{name}: a non-finite result ({v}); see the workspace {folder}")
    return out


def markdown(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = ["# GPU benchmark: ResNet-18 (GroupNorm)", "", f"Command: `python benchmarks/gpu.py {' '.join(args.argv)}`",
             "", "| dataset | device | params | K | test acc | train (s) | distill (s) | attribute (s) | "
             "one half-data retrain (s) | speedup online | speedup with distill | LDS | trivial LDS | peak memory |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        if "skipped" in r:
            lines.append(f"| {r['name']} | skipped: {r['skipped']} |" + " |" * 12)
            continue
        s, m = r["seconds"], r["memory"]
        mem = (f"{m['device_peak_gib']:.2f} GiB device" if "device_peak_gib" in m
               else f"{m['host_max_rss_gib']:.2f} GiB host")
        lines.append(f"| {r['dataset'].split(':')[0]} ({r['dataset'].split(':')[1].split(' train')[0].strip()} "
                     f"train) | {r['device']} | {r['parameters']:,} | {r['K']} | {100 * r['test_accuracy']:.1f}% | "
                     f"{s['train']:.1f} | {s['distill']:.1f} | {s['attribute']:.2f} | {s['one half-data retrain']:.1f} "
                     f"| {r['speedup_online']:,.0f}x | {r['speedup_with_distill']:,.1f}x | {r['lds']:+.3f} | "
                     f"{r['lds_same_class_trivial']:+.3f} | {mem} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="benchmarks/results/gpu")
    p.add_argument("--root", default=None, help="workspaces and retrains (default: runs/gpu, runs/gpu-smoke)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    p.add_argument("--smoke", action="store_true", help="the reduced size (CPU, under a minute)")
    p.add_argument("--datasets", default="fashion-mnist,cifar10")
    p.add_argument("--cifar-dir", default=None, help="folder of CIFAR-10's binary files (default: ddm's)")
    for k, (full, smoke) in SIZES.items():
        p.add_argument(f"--{k.replace('_', '-')}", type=int, default=None,
                       help=f"default {full} (smoke: {smoke})")
    args = p.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else argv
    args.root = args.root or ("runs/gpu-smoke" if args.smoke else "runs/gpu")
    progress.set_enabled(not args.smoke)
    size = {k: getattr(args, k) if getattr(args, k) is not None else v[1 if args.smoke else 0]
            for k, v in SIZES.items()}
    results = []
    for name in [d for d in args.datasets.split(",") if d]:
        try:
            r = run_dataset(name, args, size)
        except (ddm.exceptions.DataError, ddm.exceptions.MissingDependencyError) as exc:
            # e.g. CIFAR-10's files are not here: said, not hidden
            r = {"name": name, "skipped": str(exc).splitlines()[0]}
        results.append(r)
        print(json.dumps(r), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out.with_suffix(".json"), json.dumps(results, indent=1))
    atomic_write_text(out.with_suffix(".md"), markdown(results, args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
