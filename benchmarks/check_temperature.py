"""``ddm check``'s tempered synset (``--try-temperature``, 2 by default): does following the check get there?

The check distils a second synset with the cross-entropy at temperature 2 (``distill.head_temperature``), scores it on
its own 16 random halves and 15 other-class subsets beside the synsets in use with the rest of its advice, and
advises it where it ranks the halves better beyond two standard errors and other classes no worse beyond two. This
runs the check as a user would (its cached retrains; 200 targets with the validation rows left out, as
``check_advice.py`` does), follows its advice, and where it advised the temperature runs the check again on the new
synsets and follows that too (what ``ddm check --apply`` twice does). Everything is scored on the validation targets
(test rows 50-99 of the fixed permutation) against the matrix's 40 halves and other-class subsets, which the check
never saw, beside the default, the trivial score and the tempered synsets taken everywhere.

    python benchmarks/check_temperature.py --configs digits-convnet-K100-sgd,fmnist-mlp-K40-sgd --seed 3 \\
        --out benchmarks/results/check-temperature-select
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import check_advice as A  # noqa: E402
import matrix as M  # noqa: E402

from ddm.evaluation import check as C  # noqa: E402

STEPS = ("first check", "second check")


def _follow(dm: Any, advice: dict[str, float], data: Any, targets: Any) -> Any:
    """``dm``'s attribution of ``targets`` with the check's ``advice`` followed (a tempered synset: its variant)."""
    t = advice.get("distill.head_temperature")
    if t is not None:
        variant = dm.distill_variant(data.train, C.temperature_overrides(t), C.temperature_stage(t))
        return variant, variant.attribute(targets, "dist2", name="check-temperature-followed")
    return None, A.followed(dm, advice, targets, "check-advice")


def run(name: str, seed: int, root: Path, args: argparse.Namespace) -> dict[str, Any]:
    _, data, _, dm, cache = M.open_run(root, name, seed)
    v = M.ValidationTargets(dm, cache, data, seed)
    out: dict[str, Any] = v.baselines(dm, "check-temperature")
    always = dm.distill_variant(data.train, C.temperature_overrides(2.0), C.temperature_stage(2.0))
    attr = always.attribute(v.targets, "dist2", name="check-temperature-always")
    out["temperature 2 everywhere"] = v.score(lambda k, sel, a=attr: a.predict(k)[:, sel, 0])
    with A.validation_rows_left_out():
        current = dm
        for step in STEPS:
            r = C.check(current, data, num_targets=200)
            variant, attr = _follow(current, r["advice"], data, v.targets)
            t = r.get("temperature")
            out[step] = {"advice": r["advice"], "score": v.score(lambda k, sel, a=attr: a.predict(k)[:, sel, 0]),
                         "check": (r["lds"]["DDM"]["mean"], r["lds"]["DDM"]["se"]),
                         "tempered": None if t is None else (t["lds"]["mean"], t["margin"]["mean"], t["margin"]["se"],
                                                             t.get("other_class_margin", {}).get("mean"),
                                                             t.get("other_class_margin", {}).get("se"),
                                                             t.get("margin_over_advice", {}).get("mean"),
                                                             t.get("margin_over_advice", {}).get("se"))}
            if variant is None:
                break
            current = variant
    print(name, seed, out, flush=True)
    return out


def main() -> None:
    args, names, results = M.run_diagnostic(__doc__, run, "benchmarks/results/check-temperature",
                                            "digits-convnet-K100-sgd,fmnist-mlp-K40-sgd")
    rows = ["DDM (the default)", "same class (trivial)", "temperature 2 everywhere"]
    lines = M.diagnostic_head("Following ddm check's tempered synset (diagnostic)", args,
                              "validation targets; LDS / other-class LDS against the matrix's retrains; what the check "
                              "advised (its tempered synset's paired LDS margin and other-class margin over the "
                              "synsets in use, and its LDS margin over the row the rest of the advice gives, on the "
                              "check's own retrains) and the score with it followed; where it "
                              "advised the temperature, the second check on the new synsets and its advice followed",
                              [*rows, *STEPS])
    for n in names:
        cells = [f"{results[n][r][0]:+.3f} / {results[n][r][1]:+.3f}" for r in rows]
        for step in STEPS:
            x = results[n].get(step)
            if x is None:
                cells.append("–")
                continue
            told = ", ".join(f"{k.split('.')[-1]}={val:.3g}" for k, val in x["advice"].items()) or "nothing"
            t = x["tempered"]
            why = "" if t is None else (f" (T=2 margin {t[1]:+.3f} ± {t[2]:.3f}" + (
                f", other-class {t[3]:+.3f} ± {t[4]:.3f}" if t[3] is not None else "") + (
                f", over the advice {t[5]:+.3f} ± {t[6]:.3f})" if t[5] is not None else ")"))
            cells.append(f"{told}{why}: {x['score'][0]:+.3f} / {x['score'][1]:+.3f}")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    M.write_report(args.out, lines, results)


if __name__ == "__main__":
    main()
