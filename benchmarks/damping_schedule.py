"""Would a damping read off the training schedule tell the model kinds apart? (a diagnostic; nothing depends on it)

Gradient descent stopped after S steps of rate eta on a quadratic reaches a removal's Newton step only along
curvatures above about 1 / (eta S); below, it moves as far as eta S times the gradient, which is what a Tikhonov
damping lambda = 1 / (eta S) does. This prints, for every stored DDM workspace of one seed, that lambda (eta the
effective rate lr / (1 - momentum) of plain or momentum SGD; Adam has no single rate and is left out) as a fraction
of the head curvature's top eigenvalue, beside the fraction the default uses, so it can be set against which
damping each kind of model preferred (BENCHMARKS.md, "A smaller matching damping").

    python benchmarks/damping_schedule.py --root runs/matrix-b --seed 0 --out benchmarks/results/damping-schedule
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from ddm.distill.synset import Synset
from ddm.workspace import load_tensors

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matrix as M  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default="runs/matrix-b")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="benchmarks/results/damping-schedule")
    args = p.parse_args()
    lines = ["# A damping from the training schedule", "", f"Command: `python benchmarks/damping_schedule.py "
             f"{' '.join(sys.argv[1:])}`", "",
             "| configuration | optimizer | lr, momentum | steps S | top eigenvalue | top / mean | 1 / (eta S) | "
             "as a fraction of the top | the default's fraction |", "|---|---|---|---|---|---|---|---|---|"]
    rows = []
    for folder in sorted(Path(args.root).glob(f"*/seed{args.seed}/ddm")):
        cfg = json.loads((folder / "config.json").read_text())
        tr, path = cfg["train"], folder / "synset" / "synset.safetensors"
        if not path.exists():
            continue
        syn = Synset.from_tensors(load_tensors(path), 10)
        if syn.curvature is None:
            continue
        top, mean = syn.curvature.top_eigenvalue(), syn.curvature.mean_eigenvalue()
        steps = tr["epochs"] * math.ceil(int(syn.num_train) / tr["batch_size"])
        lam = 1 / (tr["lr"] / (1 - tr["momentum"]) * steps) if tr["optimizer"] == "sgd" else float("nan")
        name = folder.parts[-3]
        rows.append({"config": name, "top": top, "top_over_mean": top / mean, "steps": steps, "schedule_lambda": lam,
                     "fraction": lam / top, "default_fraction": cfg["distill"]["damping"]})
        lines.append(f"| {name} | {tr['optimizer']} | {tr['lr']:g}, {tr['momentum']:g} | {steps} | {top:.3g} | "
                     f"{top / mean:.0f} | {lam:.2g} | {lam / top:.2g} | {cfg['distill']['damping']:g} |")
    M.write_report(args.out, lines, rows)


if __name__ == "__main__":
    main()
