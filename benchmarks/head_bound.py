"""How far can any last-layer method get? (a diagnostic; no default depends on it)

DDM's default, last-layer influence and the unlearning all act on the last layer with the rest of the network
frozen at theta_tau. This scores the best such a method can do: for every LDS and other-class subset, the last
layer retrained *exactly* on the kept data (theta_0's last layer, the whole training schedule, on theta_tau's
frozen features: ``ddm.baselines.unlearners.retrain_head``), its targets' losses taken as the prediction. Where
even that is far below retraining's agreement with itself (``ceiling.py``), the retrained network's features move
with the data and no last-layer step can follow; where it is high and DDM is not, the step is what misses.
Validation targets of one seed (the ceiling's: ``--seed 0`` for the batch-norm ResNet).

    python benchmarks/head_bound.py --seed 0 --out benchmarks/results/head-bound-seed0 \\
        --configs digits-resnet-batchnorm-K40-momentum,digits-resnet-K40-momentum,digits-convnet-batchnorm-K40-momentum
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matrix as M  # noqa: E402


def run(name: str, seed: int, root: Path, args: Any) -> dict[str, Any]:
    cfg, data, folder, dm, cache = M.open_run(root, name, seed)
    v = M.ValidationTargets(dm, cache, data, seed)
    res = v.baselines(dm, "head-bound")
    res["last layer retrained exactly on theta_tau's features"] = v.score(M.head_retrained(dm, data, v.targets))
    print(name, res, flush=True)
    return res


def main() -> None:
    args, names, results = M.run_diagnostic(__doc__, run, "benchmarks/results/head-bound",
                                            "digits-resnet-batchnorm-K40-momentum,digits-resnet-K40-momentum")
    lines = ["# How far can a last-layer method get?", "",
             f"Command: `python benchmarks/head_bound.py {' '.join(sys.argv[1:])}`", "",
             f"Seed {args.seed}, its validation targets; each cell LDS / other-class LDS.", "",
             *M.score_table(results)]
    M.write_report(args.out, lines, results)


if __name__ == "__main__":
    main()
