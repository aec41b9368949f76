"""TracIn exact or projected: what dattri's default random projection did to the TracIn peer's numbers.

Up to ddm 0.17 the TracIn peer went through dattri's default, which projects every per-sample gradient to 512 random
dimensions before the inner products; it now takes the exact inner products (``PeerConfig.tracin_dim`` 0). This
scores both on the same runs and retrains (the matrix's validation targets, 40 random halves and its other-class
subsets), with their wall times, beside DDM and the trivial score:

    python benchmarks/tracin_projection.py --root runs/matrix-b --seed 0 \\
        --configs fmnist-mlp-K40-sgd,digits-convnet-K40-momentum-wd --out benchmarks/results/tracin-projection-s0
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

from ddm.baselines.peers import PeerConfig, group_scores, predicted_loss, sample_scores

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matrix as M  # noqa: E402


def run(name: str, seed: int, root: Path, args: argparse.Namespace) -> dict[str, Any]:
    cfg, data, folder, dm, cache = M.open_run(root, name, seed)
    vt = M.ValidationTargets(dm, cache, data, seed, args.halves_only)
    out: dict[str, Any] = dict(vt.baselines(dm, "tracin-projection"))
    for dim in (0, *(int(d) for d in args.dims.split(",") if d)):
        t0 = time.perf_counter()
        s = sample_scores("tracin", dm.model, dm.trajectory, data.train, vt.targets,
                          dataclasses.replace(PeerConfig(), tracin_dim=dim))
        seconds = time.perf_counter() - t0
        g = group_scores(s, dm.groups)
        tag = "TracIn, exact" if dim == 0 else f"TracIn, projected to {dim}"
        out[tag] = (*vt.score(lambda k, sel, g=g: predicted_loss(g[sel], k)), round(seconds, 1))
    return out


def main() -> None:
    def options(p: argparse.ArgumentParser) -> None:
        M.halves_only_option(p)
        p.add_argument("--dims", default="512", help="projection dimensions to score beside the exact inner products")

    args, names, results = M.run_diagnostic(__doc__, run, "benchmarks/results/tracin-projection",
                                            "fmnist-mlp-K40-sgd,digits-convnet-K40-momentum-wd", options=options)
    command = f"python benchmarks/tracin_projection.py {' '.join(sys.argv[1:])}"
    lines = ["# TracIn: exact inner products against dattri's random projection", "",
             f"Command: `{command}`; seed {args.seed}; LDS / other-class LDS on the validation targets, then TracIn's "
             "seconds (one thread)", "", *M.score_table(results)]
    lines += ["", "| configuration | " + " | ".join(m for m in next(iter(results.values())) if m.startswith("TracIn"))
              + " |", "|---|" + "---|" * sum(m.startswith("TracIn") for m in next(iter(results.values())))]
    for n, r in results.items():
        lines.append(f"| {n} | " + " | ".join(f"{v[2]:.1f} s" for m, v in r.items() if m.startswith("TracIn")) + " |")
    M.write_report(args.out, lines, results)


if __name__ == "__main__":
    main()
