"""Could a workspace choose its own damping by retraining only its last layer? (a diagnostic; no default uses it)

The best ``distill.damping`` differs by model (BENCHMARKS.md, "A smaller matching damping": MLPs gain from 1e-3,
the Fashion-MNIST ConvNets lose), and exact retraining to choose it per workspace costs what DDM replaces. Retraining
only the last layer on theta_tau's frozen features (theta_0's last layer, the whole schedule:
``ddm.baselines.unlearners.retrain_head``) costs a fraction of a second. This scores DDM at each ``--dampings``
value on seed ``--seed``'s validation targets and the matrix's subsets twice: against the exact (full) retrains, the
truth, and against last-layer retrains, the proxy a workspace could afford; a proxy that prefers the damping the
truth prefers, across models that differ in it, would make an automatic choice possible.

    python benchmarks/damping_head_proxy.py --seed 0 --dampings 1e-3,1e-2 --configs ... \\
        --out benchmarks/results/damping-head-proxy
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ddm.evaluation.metrics import lds

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matrix as M  # noqa: E402


def run(name: str, seed: int, root: Path, args: Any) -> dict[str, Any]:
    cfg, data, folder, dm, cache = M.open_run(root, name, seed)
    v = M.ValidationTargets(dm, cache, data, seed)
    head_truth = M.head_retrained(dm, data, v.targets)

    def proxy_score(predict: Any) -> tuple[float, float]:
        every = torch.arange(len(v.rows))
        a = lds(predict(v.keep, every), head_truth(v.keep, every))[0]
        per: list[float] = []
        for c, m in v.oc_keep.items():
            sel = torch.nonzero(v.targets.y == c).flatten()
            per += lds(predict(m, sel), head_truth(m, sel))[1]
        return round(a, 3), round(float(np.mean(per)) if per else float("nan"), 3)

    res: dict[str, Any] = {}
    for d in args.dampings.split(","):
        variant = dm if float(d) == cfg.distill.damping else M.fit_variant(folder, cfg, data, [f"distill.damping={d}"])
        attr = variant.attribute(v.targets, "dist2", name="damping-proxy")

        def predict(k: torch.Tensor, sel: torch.Tensor, attr: Any = attr) -> torch.Tensor:
            return attr.predict(k)[:, sel, 0]

        res[f"damping {d}: exact retrains"] = v.score(predict)
        res[f"damping {d}: last-layer retrains"] = proxy_score(predict)
    print(name, res, flush=True)
    return res


def main() -> None:
    def options(p: Any) -> None:
        p.add_argument("--dampings", default="1e-3,1e-2")

    args, names, results = M.run_diagnostic(__doc__, run, "benchmarks/results/damping-head-proxy",
                                            "fmnist-convnet-batchnorm-K40-sgd,digits-mlp-K100-adam", options=options)
    lines = ["# Choosing the damping on last-layer retrains", "",
             f"Command: `python benchmarks/damping_head_proxy.py {' '.join(sys.argv[1:])}`", "",
             f"Seed {args.seed}, its validation targets; each cell LDS / other-class LDS, scored against the exact "
             "retrains and against last-layer retrains on theta_tau's features.", "", *M.score_table(results)]
    M.write_report(args.out, lines, results)


if __name__ == "__main__":
    main()
