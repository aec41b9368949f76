"""A model trained with a custom loss: which loss should the synsets carry? (``distill.head_loss``)

The head recipe differentiates the training loss (``DistilledDatamodel(task=...)``): each group's last-layer
gradient and curvature in that loss are what its synset reproduces. A model trained with label smoothing sits at
the smoothed loss's minimum for the samples it fits, where their gradients in that loss vanish or point away from
their label, while retraining without them still loses what they taught. This trains matrix configurations with
cross-entropy with label smoothing 0.1 (ddm's own loop) and runs ``ddm check`` (200 targets, 16 random halves, 15
other-class subsets) on each with ``distill.head_loss=task`` (the default) and ``cross-entropy``, the same
retrains, beside last-layer influence (dattri's, which differentiates cross-entropy); then unlearns 3 draws of 4
random groups with each and retrains without them (one data order) for the test-accuracy gap.

    python benchmarks/head_loss.py --configs digits-convnet-K100-sgd,fmnist-mlp-K40-sgd --seeds 3 \\
        --out benchmarks/results/head-loss-select
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matrix as M  # noqa: E402

import ddm  # noqa: E402
from ddm.evaluation.check import check, verify_unlearning  # noqa: E402
from ddm.workspace import atomic_write_text  # noqa: E402

LOSSES = ("task", "cross-entropy")


def _smoothed(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(z, y, label_smoothing=0.1, reduction="none")


SMOOTH = ddm.Loss(_smoothed, "ce-smooth-0.1")


def run(name: str, seed: int, root: Path, draws: int) -> dict[str, Any]:
    cfg, data = M.make_config(M.CONFIGS[name][0], seed, [])
    out: dict[str, Any] = {"config": name, "seed": seed, "lds": {}, "other_class_lds": {}, "unlearning": {}}
    gen = torch.Generator().manual_seed(1000 + seed)
    for loss in LOSSES:
        c = cfg.with_overrides([f"distill.head_loss={loss}"])
        dm = ddm.DistilledDatamodel(root / name / f"seed{seed}", c, task=SMOOTH, overwrite=True)
        dm.fit(ddm.models.build(c.model, data), data.train)
        out["test_accuracy"] = float((ddm.devices.predict(dm.model, data.test.x).argmax(1) == data.test.y)
                                     .float().mean())
        r = check(dm, data, peers=("if-explicit",) if loss == "task" else (), temperature=None)
        for k, v in r["lds"].items():
            out["lds"][f"DDM, head_loss={loss}" if k == "DDM" else k] = v
        for k, v in r.get("other_class_lds", {}).items():
            out["other_class_lds"][f"DDM, head_loss={loss}" if k == "DDM" else k] = v
        out.setdefault("advice", {})[loss] = r["advice"]
        K = dm.groups.num_groups
        gen.manual_seed(1000 + seed)  # the same draws for both losses
        gaps = []
        for _ in range(draws):
            groups = torch.randperm(K, generator=gen)[:4].tolist()
            v = verify_unlearning(dm, data, groups, dm.unlearn(groups, name=f"head-loss-{loss}"), 1)
            gaps.append({"groups": groups, "exact": v["exact"]["test_accuracy"][0],
                         "unlearned": v["unlearned"]["test_accuracy"], "target": v["target"]["test_accuracy"],
                         "agreement": v["unlearned"]["test_agreement"][0],
                         "removed": v["unlearned"]["removed_accuracy"],
                         "removed_exact": v["exact"]["removed_accuracy"][0]})
        out["unlearning"][loss] = gaps
    return out


def render(rows: list[dict[str, Any]], command: str) -> str:
    methods = list(rows[0]["lds"])
    lines = ["# Label smoothing: the loss the synsets carry (`distill.head_loss`)", "", f"Command: `{command}`", "",
             "Models trained with cross-entropy with label smoothing 0.1 (ddm's loop); `ddm check` (200 targets, 16 "
             "random halves, 15 other-class subsets) with each head loss on the same retrains. LDS / other-class "
             "LDS, mean ± bootstrap standard error.", "",
             "| configuration | seed | test acc | " + " | ".join(methods) + " |",
             "|---|---|---|" + "---|" * len(methods)]
    for r in rows:
        oc = r["other_class_lds"]
        lines.append(f"| {r['config']} | {r['seed']} | {100 * r['test_accuracy']:.1f} | " + " | ".join(
            f"{r['lds'][m]['mean']:.3f} ± {r['lds'][m]['se']:.3f} / "
            + (f"{oc[m]['mean']:+.3f} ± {oc[m]['se']:.3f}" if m in oc else "–") for m in methods) + " |")
    lines += ["", "Unlearning 4 random groups (the same draws for both losses; exact: one retrain in the target's "
              "order): test accuracy exact / unlearned, in %, agreement with the exact retrain, accuracy on the "
              "removed samples exact / unlearned.", "",
              "| configuration | seed | " + " | ".join(f"head_loss={x}" for x in LOSSES) + " |",
              "|---|---|" + "---|" * len(LOSSES)]
    for r in rows:
        cells = []
        for loss in LOSSES:
            cells.append("; ".join(f"{100 * d['exact']:.1f} / {100 * d['unlearned']:.1f} "
                                   f"(agr. {100 * d['agreement']:.1f}, removed {100 * d['removed_exact']:.0f} / "
                                   f"{100 * d['removed']:.0f})" for d in r["unlearning"][loss]))
        lines.append(f"| {r['config']} | {r['seed']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", default="digits-convnet-K100-sgd,fmnist-mlp-K40-sgd")
    p.add_argument("--seeds", default="3")
    p.add_argument("--root", default="runs/head-loss")
    p.add_argument("--draws", type=int, default=3)
    p.add_argument("--out", default="benchmarks/results/head-loss")
    args = p.parse_args()
    rows = [run(c, int(s), Path(args.root), args.draws) for c in args.configs.split(",")
            for s in args.seeds.split(",")]
    command = f"python benchmarks/head_loss.py --configs {args.configs} --seeds {args.seeds} --out {args.out}"
    atomic_write_text(Path(args.out + ".json"), json.dumps(rows, indent=1))
    atomic_write_text(Path(args.out + ".md"), render(rows, command))
    print(render(rows, command))


if __name__ == "__main__":
    main()
