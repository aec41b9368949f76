"""AdamW's decoupled weight decay: left out of the Newton step, or taken as an L2 term? (a diagnostic)

Since ``train.optimizer=adamw`` the Newton emulation leaves AdamW's decay out of its curvature and of the groups'
gradients (``DistilledDatamodel.weight_decay`` is 0 for it), because the decay is no term of the loss. The
alternative, which a recorded AdamW trajectory got before, takes ``train.weight_decay`` for an L2 term as with SGD
and Adam: more damping, and each group's share of the decay in its removal gradient. This distils the same run both
ways (the second in ``grid-adamw-decay-as-l2``) and scores them on seed ``--seed``'s validation targets.

    python benchmarks/adamw_decay.py --seed 0 --configs digits-mlp-K40-adamw,digits-convnet-K40-adamw \\
        --out benchmarks/results/adamw-decay
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import ddm
from ddm.pipeline import DistilledDatamodel

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matrix as M  # noqa: E402


class DecayAsL2(DistilledDatamodel):
    """The workspace with AdamW's decay taken for an L2 term of ``train.weight_decay`` (the rule before 0.15)."""

    @property
    def weight_decay(self) -> float:
        return float(self.config.train.weight_decay)


def run(name: str, seed: int, root: Path, args: Any) -> dict[str, Any]:
    cfg, data, folder, dm, cache = M.open_run(root, name, seed)
    v = M.ValidationTargets(dm, cache, data, seed)
    res = v.baselines(dm, "adamw-decay")
    res["DDM (the default)"] += (round(float(dm.synset.damping), 6),)
    l2 = DecayAsL2(folder / "grid-adamw-decay-as-l2", cfg, overwrite=True).fit(ddm.models.build(cfg.model, data),
                                                                             data.train)
    attr = l2.attribute(v.targets, "dist2", name="adamw-decay")
    res["decay as an L2 term"] = (*v.score(lambda k, sel: attr.predict(k)[:, sel, 0]),
                                  round(float(l2.synset.damping), 6))
    print(name, res, flush=True)
    return res


def main() -> None:
    args, names, results = M.run_diagnostic(__doc__, run, "benchmarks/results/adamw-decay",
                                            "digits-mlp-K40-adamw,digits-convnet-K40-adamw")
    lines = ["# AdamW's decoupled decay in the Newton step", "",
             f"Command: `python benchmarks/adamw_decay.py {' '.join(sys.argv[1:])}`", "",
             f"Seed {args.seed}, its validation targets; each cell LDS / other-class LDS (and the absolute damping "
             "lambda of the matching).", "", *M.score_table(results)]
    M.write_report(args.out, lines, results)


if __name__ == "__main__":
    main()
