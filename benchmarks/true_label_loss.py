"""The true-label loss before and after it was made exact (a diagnostic; BENCHMARKS.md, "The true-label loss in
single precision").

For each ``configuration:seed``, the matrix's validation scores (LDS / other-class LDS of DDM's default and of the
trivial same-class score) twice in one run: with the loss as it was (``log_softmax`` in single precision, in DDM's
Dist2 predictions and in the exact retrains' losses alike) and as it is (``ddm.objectives.influence.
true_label_loss``). Prints one line per configuration.

    python benchmarks/true_label_loss.py digits-convnet-K100-sgd:3 fmnist-mlp-K40-sgd:3 digits-convnet-K40-momentum-wd:3
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matrix as M  # noqa: E402

from ddm import progress  # noqa: E402
from ddm.objectives.influence import Dist2  # noqa: E402


class LogSoftmaxDist2(Dist2):
    """Dist2 as it was: ``-log_softmax(z)[y]`` in the logits' precision."""

    name = "dist2-log-softmax"

    def outputs(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logp = logits.log_softmax(-1)
        return -logp.gather(-1, labels.view(1, -1, 1).expand(logp.shape[0], -1, 1))


def log_softmax_losses(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``matrix.losses`` as it was."""
    return F.cross_entropy(logits.transpose(1, 2), labels.expand(len(logits), -1), reduction="none")


def scores(name: str, seed: int) -> dict[str, Any]:
    exact = M.losses
    cfg, data, folder, dm, cache = M.open_run(Path("runs/matrix-b"), name, seed)
    out: dict[str, Any] = {}
    for tag, objective, loss in (("before (log_softmax, float32)", LogSoftmaxDist2(), log_softmax_losses),
                                 ("exact", Dist2(), exact)):
        M.losses = loss
        try:
            v = M.ValidationTargets(dm, cache, data, seed)
            attr = dm.attribute(v.targets, objective, name="true-label-" + objective.name)
            same = M.same_class(dm.groups, v.targets.y)
            out[tag] = {"DDM": v.score(lambda k, sel, a=attr: a.predict(k)[:, sel, 0]),
                        "trivial": v.score(lambda k, sel, s=same: M.predicted_loss(s[sel], k))}
        finally:
            M.losses = exact
    return out


def main() -> None:
    torch.set_num_threads(1)
    progress.set_enabled(False)
    for spec in sys.argv[1:]:
        name, seed = spec.rsplit(":", 1)
        print(name, seed, scores(name, int(seed)), flush=True)


if __name__ == "__main__":
    main()
