"""The unlearning's class-prior shift (``emulate.unlearn_prior_shift``) on draws that thin a class (a diagnostic).

A class that keeps a fraction r of its training samples gets ``s log r`` on its bias. Asked before the back-off
ignored thinned classes ("What the four unlearning misses are": the selection said 0, the report 1-2); asked again
with ``backoff_thinned.py``'s draws: the matrix's three 4-group draws and three thinning draws per run, against exact
retraining in the target's data order (cached there), for each ``s`` of ``--grid``.

    python benchmarks/prior_shift_thinned.py --root runs/matrix-b --seeds 3 \\
        --configs digits-convnet-K100-sgd,fmnist-mlp-K40-sgd --out benchmarks/results/prior-shift-thinned-select
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matrix as M  # noqa: E402
from backoff_thinned import sweep, sweep_draws, sweep_parser  # noqa: E402
from temperature_unlearning import accs, cell  # noqa: E402

from ddm import devices  # noqa: E402


def run(name: str, seed: int, root: Path, grid: list[float]) -> list[dict[str, Any]]:
    cfg, data, folder, dm, cache = M.open_run(root, name, seed)
    y = data.test.y
    base = dm.config
    rows = []
    for label, rem, on in sweep_draws(dm, data, seed):
        row: dict[str, Any] = {"config": name, "seed": seed, "draw": label, "groups": rem,
                               "exact": accs(cache.get(rem), y, on)}
        for s in grid:
            dm.config = base.with_overrides([f"emulate.unlearn_prior_shift={s}"])
            row[f"s={s:g}"] = accs(devices.predict(dm.unlearn(rem, name="prior-shift"), data.test.x), y, on)
        dm.config = base
        rows.append(row)
        print(name, seed, label, rem, [cell(v) for k, v in row.items() if k == "exact" or k.startswith("s=")],
              flush=True)
    return rows


def main() -> None:
    p = sweep_parser(__doc__, "benchmarks/results/prior-shift-thinned-select")
    p.add_argument("--grid", default="0,1,2", help="values of emulate.unlearn_prior_shift")
    args = p.parse_args()
    grid = [float(s) for s in args.grid.split(",")]
    keys = tuple(f"s={s:g}" for s in grid)
    lines = ["# The unlearning's class-prior shift on draws that thin a class (diagnostic)", "",
             f"Command: `python benchmarks/prior_shift_thinned.py {' '.join(sys.argv[1:])}`; test accuracy in % (for a "
             "thinning draw, after the slash, the thinned class's): exact retraining (target's data order) / "
             "`ddm unlearn` with emulate.unlearn_prior_shift = s.", "",
             "| configuration | seed | draw | exact | " + " | ".join(keys) + " |",
             "|---|---|---|---|" + "---|" * len(keys)]
    sweep(args, lambda name, seed, root: run(name, seed, root, grid), lines,
          lambda r: [cell(r[k]) for k in ("exact", *keys)], keys, thinned_class=True)


if __name__ == "__main__":
    main()
