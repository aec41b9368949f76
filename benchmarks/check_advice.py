"""What does following ``ddm check``'s advice give, with 50 targets and with more? (a diagnostic)

``ddm check`` refits three settings on its 16 random halves (the emulation's damping, the class balance, the
schedule term) and advises each only beyond two bootstrap standard errors (subsets and targets redrawn). More
targets cost it no retrain: a retrain's logits cover the whole test split. This runs the check itself on a matrix
workspace (its cached retrains: the same 16 halves, 15 other-class subsets and full-data retrain) with
``--num-targets`` 50 (its default: the reported rows 0-49 of the fixed permutation) and with 200 (rows 0-49 and
100-249, so that the validation rows 50-99 stay unseen), follows all its advice, and scores the result on the
validation targets against the matrix's 40 halves and other-class subsets, which the check never saw.

    python benchmarks/check_advice.py --configs digits-convnet-K100-sgd,fmnist-mlp-K40-sgd --seed 3 \\
        --out benchmarks/results/check-advice-select
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matrix as M  # noqa: E402

from ddm.evaluation import check as C  # noqa: E402

COUNTS = (50, 200)


def rows_without_validation(num_test: int, n: int) -> torch.Tensor:
    """The check's ``n`` targets with the validation rows (50-99 of the fixed permutation) left out."""
    perm = torch.randperm(num_test, generator=torch.Generator().manual_seed(M.TARGET_SEED))
    return torch.cat([perm[:50], perm[100:100 + n - 50]])[:n].sort().values


@contextmanager
def validation_rows_left_out() -> Iterator[None]:
    """The check's targets drawn without the validation rows (:func:`rows_without_validation`) inside the block."""
    original = C.check_targets
    C.check_targets = rows_without_validation  # type: ignore[assignment]
    try:
        yield
    finally:
        C.check_targets = original  # type: ignore[assignment]


def followed(dm: Any, advice: dict[str, float], targets: Any, name: str) -> Any:
    """``dm``'s ``dist2`` attribution of ``targets`` with the check's emulation ``advice`` followed (``dm``'s own
    configuration given back)."""
    own = dm.config
    try:
        dm.config = own.with_overrides([f"{k}={val!r}" for k, val in advice.items()])
        return dm.attribute(targets, "dist2", name=name)
    finally:
        dm.config = own


def run(name: str, seed: int, root: Path, args: argparse.Namespace) -> dict[str, Any]:
    _, data, _, dm, cache = M.open_run(root, name, seed)
    v = M.ValidationTargets(dm, cache, data, seed, halves_only=args.halves_only)
    out: dict[str, Any] = v.baselines(dm, "check-advice")
    with validation_rows_left_out():
        for n in COUNTS:
            r = C.check(dm, data, num_targets=n, temperature=None)  # the tempered synset: check_temperature.py
            attr = followed(dm, r["advice"], v.targets, "check-advice")
            out[f"{n} targets"] = {"advice": r["advice"],
                                   "score": v.score(lambda k, sel, a=attr: a.predict(k)[:, sel, 0]),
                                   "check": (r["lds"]["DDM"]["mean"], r["lds"]["DDM"]["se"]),
                                   "verdict": r["verdict"][0]}
    print(name, seed, out, flush=True)
    return out


def main() -> None:
    args, names, results = M.run_diagnostic(__doc__, run, "benchmarks/results/check-advice",
                                            "digits-convnet-K100-sgd,fmnist-mlp-K40-sgd", options=M.halves_only_option)
    counts = [f"{n} targets" for n in COUNTS]
    rows = ["DDM (the default)", "same class (trivial)", *counts]
    lines = M.diagnostic_head("Following ddm check's advice, with 50 targets and with 200 (diagnostic)", args,
                              "validation targets; LDS / other-class LDS against the matrix's retrains; for each "
                              "target count, what the check advised and the score with all of it followed", rows)
    for n in names:
        cells = [f"{results[n][r][0]:+.3f} / {results[n][r][1]:+.3f}" for r in rows[:2]]
        for c in counts:
            x = results[n][c]
            told = ", ".join(f"{k.split('.')[-1]}={val:.3g}" for k, val in x["advice"].items()) or "nothing"
            cells.append(f"{told}: {x['score'][0]:+.3f} / {x['score'][1]:+.3f}")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    M.write_report(args.out, lines, results)


if __name__ == "__main__":
    main()
