"""A lead, not a default: the mean of two synsets' predictions (T = 1 and T = 2) on the matrix's held-out truth.

``check_average.py`` saw, on ``ddm check``'s own retrains, the plain mean of the predicted losses of the workspace's
synsets and of synsets distilled at ``distill.head_temperature=2`` keep the tempered ones' LDS gain with less
other-class loss. This scores the same three predictors on the matrix's runs, validation targets, 40 halves and
other-class subsets (retrains no check saw):

    python benchmarks/average_synsets.py --root runs/matrix-b --seed 0 \\
        --configs fmnist-mlp-K40-sgd,digits-convnet-K40-momentum-wd --out benchmarks/results/average-synsets-s0
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matrix as M  # noqa: E402


def run(name: str, seed: int, root: Path, args: argparse.Namespace) -> dict[str, Any]:
    cfg, data, folder, dm, cache = M.open_run(root, name, seed)
    vt = M.ValidationTargets(dm, cache, data, seed, args.halves_only)
    out: dict[str, Any] = dict(vt.baselines(dm, "average-synsets"))
    own = dm.attribute(vt.targets, "dist2", name="average-synsets")
    t = args.temperature
    hot = dm.distill_variant(data.train, [f"distill.head_temperature={t!r}"], f"check/synset-temperature-{t:g}")
    tempered = hot.attribute(vt.targets, "dist2", name="average-synsets-tempered")
    out[f"T = {t:g}"] = vt.score(lambda k, sel: tempered.predict(k)[:, sel, 0])
    out["mean of the two"] = vt.score(lambda k, sel: 0.5 * (own.predict(k)[:, sel, 0] + tempered.predict(k)[:, sel, 0]))
    return out


def main() -> None:
    def options(p: argparse.ArgumentParser) -> None:
        M.halves_only_option(p)
        p.add_argument("--temperature", type=float, default=2.0)

    args, names, results = M.run_diagnostic(__doc__, run, "benchmarks/results/average-synsets",
                                            "fmnist-mlp-K40-sgd,digits-convnet-K40-momentum-wd", options=options)
    command = f"python benchmarks/average_synsets.py {' '.join(sys.argv[1:])}"
    head = f"Command: `{command}`; seed {args.seed}; LDS / other-class LDS on the validation targets"
    M.write_report(args.out, ["# The mean of two synsets' predictions on the matrix's retrains", "", head, "",
                              *M.score_table(results)], results)


if __name__ == "__main__":
    main()
