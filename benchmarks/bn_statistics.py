"""Do the batch-norm statistics explain the batch-norm ResNet's miss? (a diagnostic; no default depends on it)

On the held-out batch-norm ResNet DDM ranks below the trivial same-class score, and no last-layer method gets above
it (``head_bound.py``). One thing a retrain without some groups changes that the last layer cannot is the running
statistics every later layer is normalised with. This scores that effect alone: for every LDS half subset, the
running statistics recomputed on the kept data (a pass in training mode over it at theta_tau's weights, cumulative
averages), the targets' losses minus their losses with the statistics recomputed the same way on all the data; and
DDM's predicted losses plus ``s`` times that change. Validation targets of one seed, the LDS halves only.

    python benchmarks/bn_statistics.py --seed 1 --out benchmarks/results/bn-statistics-seed1
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matrix as M  # noqa: E402

SCALES = (1.0, -0.1, -0.3, -1.0, -3.0)


def run(name: str, seed: int, root: Path, args: Any) -> dict[str, Any]:
    cfg, data, folder, dm, cache = M.open_run(root, name, seed)
    v = M.ValidationTargets(dm, cache, data, seed, halves_only=True)
    res = v.baselines(dm, "bn-statistics")
    memo: dict[bytes, torch.Tensor] = {}

    def recomputed(k: torch.Tensor) -> torch.Tensor:
        key = k.numpy().tobytes()
        if key not in memo:
            net = copy.deepcopy(dm.model)
            for m in net.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.reset_running_stats()
                    m.momentum = None  # cumulative average over the pass
            x = data.train.x[torch.isin(dm.groups.assignment, torch.nonzero(k).flatten())]
            order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
            net.train()
            with torch.no_grad():
                for i in range(0, len(x), cfg.train.batch_size):
                    net(x[order[i:i + cfg.train.batch_size]])
                net.eval()
                memo[key] = M.losses(net(v.targets.x)[None], v.targets.y)[0]
        return memo[key]

    full = recomputed(torch.ones(dm.groups.num_groups, dtype=torch.bool))

    def change(masks: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        return torch.stack([recomputed(k)[cols] - full[cols] for k in masks])

    attr = dm.attribute(v.targets, "dist2", name="bn-statistics")
    res["statistics recomputed on the kept data"] = v.score(change)
    for s in SCALES:
        res[f"DDM + {s:g} x that change"] = v.score(lambda k, sel, s=s: attr.predict(k)[:, sel, 0] + s * change(k, sel))
    print(name, res, flush=True)
    return res


def main() -> None:
    args, names, results = M.run_diagnostic(__doc__, run, "benchmarks/results/bn-statistics",
                                            "digits-resnet-batchnorm-K40-momentum")
    lines = ["# Do the batch-norm statistics explain the batch-norm ResNet's miss?", "",
             f"Command: `python benchmarks/bn_statistics.py {' '.join(sys.argv[1:])}`", "",
             f"Seed {args.seed}, its validation targets, the 40 LDS halves only; each cell LDS / other-class LDS "
             "(nan: not scored).", "", *M.score_table(results)]
    M.write_report(args.out, lines, results)


if __name__ == "__main__":
    main()
