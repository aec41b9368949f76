"""A lead, not a default: the average of the two synsets' predictions, scored by ``ddm check`` on its own retrains.

``ddm check`` distils a second synset at temperature 2 beside the workspace's own and scores both on the same
retrains. This scores, on the same retrains, the mean of the two synsets' predicted losses in the tempered row's
place (its margins over DDM paired as the check pairs them), on copies of the given workspaces (the check writes its
``check.json``), and prints the check's temperature row with and without the average:

    python benchmarks/check_average.py runs/demo runs/probe/cnn-wd runs/probe/fm-mlp3 \\
        --out benchmarks/results/check-average-probes
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import ddm
import ddm.evaluation.check as C
from ddm import progress
from ddm.workspace import atomic_write_text


def row(r: dict[str, Any]) -> str:
    t = r["temperature"]
    return (f"{t['lds']['mean']:.3f} (margin {t['margin']['mean']:+.3f} ± {t['margin']['se']:.3f}) / "
            f"{t['other_class_lds']['mean']:+.3f} (margin {t['other_class_margin']['mean']:+.3f} ± "
            f"{t['other_class_margin']['se']:.3f})")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("workspaces", nargs="+")
    p.add_argument("--out", default="benchmarks/results/check-average")
    args = p.parse_args()
    progress.set_enabled(False)
    tempered = C._tempered_predictor

    def averaged(dm: Any, data: Any, targets: Any, temperature: float | None) -> Any:
        t2 = tempered(dm, data, targets, temperature)
        if t2 is None:
            return None
        own = dm.attribute(targets, "dist2", name="check")
        return lambda k: 0.5 * (own.predict(k)[..., 0] + t2(k))

    lines = ["# The average of the two synsets' predictions, on `ddm check`'s retrains", "",
             f"Command: `python benchmarks/check_average.py {' '.join(sys.argv[1:])}`; each cell LDS / other-class "
             "LDS, with the paired margin over DDM ± its bootstrap standard error", "",
             "| workspace | DDM | temperature 2 | the average of the two |", "|---|---|---|---|"]
    results = {}
    for ws in args.workspaces:
        with tempfile.TemporaryDirectory() as tmp:
            copy = Path(tmp) / "ws"
            shutil.copytree(ws, copy)
            dm = ddm.DistilledDatamodel(copy).load()
            data = ddm.data.load(dm.config.data)
            plain = C.check(dm, data)
            C._tempered_predictor = averaged
            try:
                mean = C.check(dm, data)
            finally:
                C._tempered_predictor = tempered
        results[ws] = {"plain": plain, "average": mean}
        lines.append(f"| {ws} | {plain['lds']['DDM']['mean']:.3f} / {plain['other_class_lds']['DDM']['mean']:+.3f} | "
                     f"{row(plain)} | {row(mean)} |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out.with_suffix(".md"), "\n".join(lines) + "\n")
    atomic_write_text(out.with_suffix(".json"), json.dumps(results, indent=1, default=str))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
