"""The class-level synset where the group synsets switched to a temperature (``distill.auto_temperature``): does
following the switch help class-level attribution? (a report of the default, not a choice)

Since 0.19 the class-level synset (hierarchical attribution, ``ddm unlearn --classes``) is matched at the temperature
the group synsets switched to. Here, on runs where they switched, class-level attribution (K = classes,
``DistilledDatamodel.attribute_classes``, dist2) is scored with the class-level synset as the default makes it now
and as it was made before (plain, from the ``distill.auto_temperature=0`` workspace beside the default's), and the
trivial score that marks the target's own class, against exact retrains without whole classes: ``--subsets`` random
halves of the classes (class-level LDS) and, per class among the targets, ``--other`` subsets that keep that class
and drop half of the others (class-level other-class LDS). Validation targets (test rows 50-99); retrains in the
target's data order, cached with the matrix's.

    python benchmarks/class_temperature.py --root runs/matrix-b --seed 0 \\
        --configs digits-alexnet-K40-adam,digits-resnet-batchnorm-K40-momentum \\
        --out benchmarks/results/class-temperature-s0
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matrix as M  # noqa: E402

from ddm.baselines.peers import predicted_loss  # noqa: E402
from ddm.emulate.perturbations import sample_perturbations  # noqa: E402
from ddm.evaluation.metrics import other_class_subsets  # noqa: E402

PLAIN = "distill.auto_temperature=0"
ROWS = {"default": "default (follows the switch)", "plain": "plain class-level synset (before)"}


def options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--subsets", type=int, default=40, help="random halves of the classes (class-level LDS)")
    p.add_argument("--other", type=int, default=3, help="other-class subsets per class among the targets")
    p.add_argument("--score-all", action="store_true",
                   help="score the runs where the groups did not switch as well (the default's class-level synset "
                        "is the plain one there: one row for both)")


def run(name: str, seed: int, root: Path, args: argparse.Namespace) -> dict[str, Any]:
    cfg, data, folder, dm, cache = M.open_run(root, name, seed)
    st = dm.ws.require("synset")
    out: dict[str, Any] = {"temperature": st.get("temperature")}
    if st.get("temperature") is None and not args.score_all:
        print(name, seed, "did not switch: its class-level synset is the plain one by construction", flush=True)
        return out
    dm.fit_classes(data.train)
    # where the groups did not switch, the default's class-level synset is the plain one: one row for both
    plain = M.fit_variant(folder, cfg, data, [PLAIN]).fit_classes(data.train) if st.get("temperature") else None
    models = {"default": dm, **({"plain": plain} if plain is not None else {})}
    out["class_temperature"] = (dm.ws.stage_info("synset-class") or {}).get("temperature")
    rows, targets = M.target_rows(data)
    C = int(data.num_classes)
    assert dm.class_groups is not None
    keep = sample_perturbations(C, args.subsets, 0.5, seed=30_000 + seed)
    oc = other_class_subsets(dm.class_groups, targets.y.unique().tolist(), args.other, 40_000 + 100 * seed)

    def without_classes(k: torch.Tensor) -> torch.Tensor:  # the targets' losses, retrained without ~k's classes
        groups = torch.nonzero(torch.isin(dm.groups.labels, torch.nonzero(~k).flatten())).flatten().tolist()
        return M.losses(cache.get(groups)[rows][None], targets.y)[0]

    retrained = M.per_mask(without_classes)

    def score(predict: M.Predictor) -> tuple[float, float]:
        return M.subset_scores(keep, oc, targets.y, predict, retrained)

    for kind, model in models.items():
        attr = model.attribute_classes(targets, "dist2")
        out[ROWS[kind]] = score(lambda k, sel, a=attr: a.predict(k)[:, sel, 0])
    out.setdefault(ROWS["plain"], out[ROWS["default"]])
    same = torch.nn.functional.one_hot(targets.y, C).float()
    out["same class (trivial)"] = score(lambda k, sel: predicted_loss(same[sel], k))
    # whole classes removed with the class-level synset (ddm unlearn --classes): test accuracy after, exact and both
    out["class removals"] = []
    for c in (0, C // 2):
        exact = cache.get(torch.nonzero(dm.groups.labels == c).flatten().tolist())
        row = {"class": c, "exact": (exact.argmax(1) == data.test.y).float().mean().item()}
        for label, model in models.items():
            with torch.no_grad():
                pred = model.unlearn([c], name="class-temperature", synset="classes")(data.test.x).argmax(1)
            row[label] = (pred == data.test.y).float().mean().item()
        out["class removals"].append({"plain": row["default"], **row})
    print(name, seed, out, flush=True)
    return out


def main() -> None:
    args, names, results = M.run_diagnostic(__doc__, run, "runs/probe/class-temperature", "digits-alexnet-K40-adam",
                                            options=options)
    rows = [*ROWS.values(), "same class (trivial)"]
    lines = M.diagnostic_head(
        "The class-level synset following the groups' automatic temperature", args,
        f"validation targets; class-level LDS over {args.subsets} random halves of the classes / other-class LDS over "
        f"{args.other} subsets per class that keep the target's class; exact retrains in the target's data order",
        ["temperature", *rows])
    unl = [(n, r) for n, r in results.items() if r.get("class removals")]
    for n in names:
        r = results[n]
        if "same class (trivial)" not in r:
            lines.append(f"| {n} | not switched | – | – | – |")
            continue
        lines.append(f"| {n} | {r['class_temperature'] or 1:g}{'' if r.get('temperature') else ' (not switched)'} | "
                     + " | ".join(f"{r[k][0]:+.3f} / {r[k][1]:+.3f}" for k in rows) + " |")
    if unl:
        lines += ["", "Whole classes removed with the class-level synset (`ddm unlearn --classes`): test accuracy "
                  "after, exact retraining / the default (follows the switch) / the plain class-level synset, %", "",
                  "| configuration | class | exact | default | plain |", "|---|---|---|---|---|"]
        lines += [f"| {n} | {u['class']} | {100 * u['exact']:.1f} | {100 * u['default']:.1f} | {100 * u['plain']:.1f} |"
                  for n, r in unl for u in r["class removals"]]
    M.write_report(args.out, lines, results)


if __name__ == "__main__":
    main()
