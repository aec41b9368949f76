"""How many groups `ddm diagnose` flags, on clean data and on 10 % flipped labels, at each threshold.

For each dataset and seed: a DDM fitted on the clean training split and one fitted on a copy with 10 % of
its labels flipped (``ddm.diagnosis.flip_labels``); both diagnosed on the first half of the test split (the
CLI's default validation set). For each threshold on the bounded score (``Diagnosis.score``), the fraction of
training samples flagged on clean data, and on the noisy data the precision (flagged samples that are
flipped) and recall (flipped samples flagged). A default threshold is chosen for each objective (loss and
accuracy) on the ``--select-seed`` only (the highest recall of flipped labels while flagging under 5 % of
clean data); the other seeds report it.

    python benchmarks/diagnosis_threshold.py --root runs/diagnosis --out benchmarks/results/diagnosis-threshold

``--fdr`` also scores the Benjamini-Hochberg cut at each rate of ``FDRS`` (``Diagnosis.issues(fdr=q)``, the loss's
default since 0.25) on the same fitted DDMs, with its own choice by the same rule;
``benchmarks/diagnosis_fdr_rule.py`` compares a rate with the threshold per family of configurations.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

import ddm
from ddm import progress
from ddm.diagnosis import DIAGNOSIS_CLASS_BALANCE, diagnose, flip_labels
from ddm.workspace import atomic_write_text

DATASETS: dict[str, list[str]] = {
    "digits-convnet": [],  # depth 3 (presets.demo() without data keeps it): what the default was chosen on
    # the depth rule's digits ConvNet (0.21), asked only with --datasets digits-convnet-d2
    "digits-convnet-d2": ["model.depth=2"],
    "fmnist-convnet": ["data.name=fashion-mnist", "data.train_size=3000", "data.test_size=1000", "model.width=16",
                       "train.epochs=5", "train.lr=0.05"],
    # held out for the score with a standard error (0.22): MLPs, asked only with --datasets
    "fmnist-mlp": ["data.name=fashion-mnist", "data.train_size=3000", "data.test_size=1000", "model.name=mlp",
                   "model.width=128", "model.depth=2", "train.optimizer=adam", "train.lr=0.001", "train.epochs=10"],
    "digits-mlp": ["model.name=mlp", "model.width=128", "model.depth=2", "train.lr=0.05", "train.momentum=0.9"],
    # many small groups (the false-discovery-rate cut's fresh test, probes-028): about 10 and 7 samples a group
    "fmnist-mlp-K300": ["data.name=fashion-mnist", "data.train_size=3000", "data.test_size=1000", "model.name=mlp",
                        "model.width=128", "model.depth=2", "train.optimizer=adam", "train.lr=0.001",
                        "train.epochs=10", "cluster.per_class=30"],
    "digits-mlp-K200": ["model.name=mlp", "model.width=128", "model.depth=2", "train.lr=0.05", "train.momentum=0.9",
                        "cluster.per_class=20"],
    # probes of the cut's default on networks no rule saw (probes-028, after the fresh test; measured once)
    "digits-resnet-K40": ["model.name=resnet", "model.width=16", "train.momentum=0.9", "train.lr=0.02",
                          "cluster.per_class=4"],
    "fmnist-convnet-K200-adam": ["data.name=fashion-mnist", "data.train_size=3000", "data.test_size=1000",
                                 "model.width=16", "train.epochs=5", "train.optimizer=adam", "train.lr=0.001",
                                 "cluster.per_class=20"],
}
THRESHOLDS = [0.5, 0.1, 0.05, 0.01, 1e-3, 1e-4, 1e-5]
#: false discovery rates of the Benjamini-Hochberg cut (``Diagnosis.issues(fdr=...)``), scored beside the thresholds
#: with --fdr (keys ``fdr<q>`` in the JSON)
FDRS = [0.5, 0.2, 0.1, 0.05, 0.01]


OBJECTIVES = ("loss", "accuracy")


def one(root: Path, name: str, seed: int, scales: tuple[float, ...] = (DIAGNOSIS_CLASS_BALANCE,),
        score: str = "error", fdr: bool = False) -> dict[float, dict[str, Any]]:
    """Flag rates of both diagnosis objectives at every threshold, clean and with 10 % flipped labels, for each
    class balance of the diagnosis' attribution (one fitted DDM per setting serves them all). ``score``: ``error``
    (``Diagnosis.score`` as `ddm diagnose` computes it) or ``robust-z`` (the robust z-score among groups, the
    score before 0.22: the standard error left out)."""
    base = ddm.presets.demo().with_overrides(
        [*DATASETS[name], *[f"{s}.seed={seed}" for s in ("model", "train", "cluster", "distill", "emulate")]])
    data = ddm.data.load(base.data)
    val = data.test[: max(1, len(data.test) // 2)]
    noisy_train, flipped = flip_labels(data.train, 0.1, data.num_classes, seed=50_000 + seed)
    outs = {scale: {"dataset": name, "seed": seed, **{o: {"clean": {}, "noisy": {}} for o in OBJECTIVES}}
            for scale in scales}
    for setting, train in (("clean", data.train), ("noisy", noisy_train)):
        # overwrite: a changed default re-distils (the trained model is reused)
        dm = ddm.DistilledDatamodel(root / name / f"seed{seed}" / setting, base, overwrite=True)
        dm.fit(ddm.models.build(base.model, data), train)
        for scale, objective in ((s, o) for s in scales for o in OBJECTIVES):
            diag = diagnose(dm, val, objective, other_class_scale=scale)
            if score == "robust-z":
                diag.standard_error = None
            sizes = diag.groups.sizes()
            res = outs[scale][objective][setting]
            rules = [(str(t), {"threshold": t}) for t in THRESHOLDS]
            rules += [(f"fdr{q:g}", {"fdr": q}) for q in FDRS] if fdr else []
            for key, rule in rules:
                flagged = diag.issues(**rule)
                mask = np.zeros(len(train), dtype=bool)
                for g in flagged:
                    mask[diag.groups.members(g).numpy()] = True
                row: dict[str, float] = {"groups": len(flagged), "fraction": float(mask.mean())}
                if setting == "noisy":
                    f = flipped.numpy()
                    row["precision"] = float(f[mask].mean()) if mask.any() else float("nan")
                    row["recall"] = float(f[mask].sum() / f.sum())
                res[key] = row
            res["groups"] = diag.groups.num_groups
            res["raw_negative_fraction"] = float(sizes[diag.quality < 0].sum()) / len(train)
    return outs


def choose(results: list[dict[str, Any]], objective: str,
           keys: list[str]) -> tuple[str, dict[str, tuple[float, float]]]:
    """The rule (a threshold's or a false discovery rate's key) with the highest recall of flipped labels among
    those flagging under 5 % of clean data; the strictest (the last key) where none does."""
    sel = {k: (float(np.mean([r[objective]["clean"][k]["fraction"] for r in results])),
               float(np.mean([r[objective]["noisy"][k]["recall"] for r in results]))) for k in keys}
    ok = [i for i, k in enumerate(keys) if sel[k][0] < 0.05]
    # ties go to the looser rule (the earlier key: thresholds and rates are listed from the loosest)
    return (keys[max(ok, key=lambda i: (sel[keys[i]][1], -i))] if ok else keys[-1]), sel


def section(title: str, what: str, chosen: str, sel: dict[str, tuple[float, float]], report: list[dict[str, Any]],
            select_seed: int, seeds: str, objective: str, keys: list[str], label: Any, mark_as: str) -> list[str]:
    lines = [title, "",
             f"Selection: seed {select_seed} (every dataset run): the {what} with the highest recall on flipped "
             f"labels among those flagging under 5 % of clean data: **{label(chosen)}**. Reported: seeds {seeds}.", "",
             f"| {what} | selection: clean flagged / noisy recall | report: clean flagged (mean, max) "
             "| report: clean groups flagged (mean) | report: noisy precision | report: noisy recall |",
             "|---|---|---|---|---|---|"]
    for k in keys:
        cf = [r[objective]["clean"][k]["fraction"] for r in report]
        cg = [r[objective]["clean"][k]["groups"] for r in report]
        pr = [r[objective]["noisy"][k]["precision"] for r in report if r[objective]["noisy"][k]["groups"]]
        rc = [r[objective]["noisy"][k]["recall"] for r in report]
        mark = f" ({mark_as})" if k == chosen else ""
        lines.append(f"| {label(k)}{mark} | {100 * sel[k][0]:.1f}% / {100 * sel[k][1]:.1f}% | "
                     f"{100 * np.mean(cf):.1f}%, {100 * np.max(cf):.1f}% | {np.mean(cg):.1f} | "
                     + (f"{100 * np.mean(pr):.1f}% (of {len(pr)} runs flagging)" if pr else "nothing flagged")
                     + f" | {100 * np.mean(rc):.1f}% |")
    raw = [r[objective]["clean"]["raw_negative_fraction"] for r in report]
    lines += ["", f"The raw sign (quality < 0) flags {100 * np.mean(raw):.1f}% of clean training data on average.",
              "", f"| dataset | seed | clean flagged at {mark_as} | noisy precision / recall at {mark_as} |",
              "|---|---|---|---|"]
    for r in report:
        n = r[objective]["noisy"][chosen]
        prec = "nothing flagged" if not n["groups"] else f"{100 * n['precision']:.1f}%"
        lines.append(f"| {r['dataset']} | {r['seed']} | {100 * r[objective]['clean'][chosen]['fraction']:.1f}% "
                     f"| {prec} / {100 * n['recall']:.1f}% |")
    return lines + [""]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default="runs/diagnosis")
    p.add_argument("--out", default="benchmarks/results/diagnosis-threshold")
    p.add_argument("--select-seed", type=int, default=3)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--datasets", default="digits-convnet,fmnist-convnet", help="comma list of DATASETS")
    p.add_argument("--other-class-scale", default=str(DIAGNOSIS_CLASS_BALANCE),
                   help="the attribution's class balance in the diagnosis (default: `ddm diagnose`'s; 1: none); a "
                        "comma list scores each on the same fitted DDMs, one report per value (OUT-sS.md)")
    p.add_argument("--score", choices=("error", "robust-z"), default="error",
                   help="the bounded score thresholded: `error` (the default's: the quality over its standard error "
                        "across the validation samples) or `robust-z` (before 0.22: the robust z-score among groups)")
    p.add_argument("--fdr", action="store_true",
                   help=f"also flag by the Benjamini-Hochberg cut at each false discovery rate of {FDRS} "
                        "(Diagnosis.issues(fdr=...)), chosen by the same rule as the threshold, on the same DDMs")
    args = p.parse_args()
    progress.set_enabled(False)
    root = Path(args.root)
    scales = tuple(float(v) for v in args.other_class_scale.split(","))
    names = [n for n in args.datasets.split(",") if n]
    unknown = [n for n in names if n not in DATASETS]
    if unknown:
        raise SystemExit(f"unknown --datasets {unknown}; choose from {', '.join(DATASETS)}")
    selection = [one(root, n, args.select_seed, scales, args.score, args.fdr) for n in names]
    reported = [one(root, n, int(s), scales, args.score, args.fdr) for s in args.seeds.split(",") for n in names]
    for scale in scales:
        results = [r[scale] for r in selection]
        report = [r[scale] for r in reported]
        lines = ["# Diagnosis threshold", "",
                 f"Command: `python benchmarks/diagnosis_threshold.py {' '.join(sys.argv[1:])}` "
                 "(`make bench-diagnosis` without arguments)"
                 + (f"; class balance {scale:g}" if len(scales) > 1 else "") + f"; score `{args.score}`.",
                 "Validation: the first half of each test split; 10 % of the training labels flipped for the noisy "
                 "rows.", ""]
        chosen: dict[str, Any] = {}
        thresholds, rates = [str(t) for t in THRESHOLDS], [f"fdr{q:g}" for q in FDRS]
        for objective in OBJECTIVES:
            key, sel = choose(results, objective, thresholds)
            chosen[objective] = float(key)
            lines += section(f"## Objective `{objective}`", "threshold", key, sel, report, args.select_seed,
                             args.seeds, objective, thresholds, lambda k: f"{float(k):g}", "default")
            if args.fdr:
                key, sel = choose(results, objective, rates)
                chosen[f"{objective}-fdr"] = float(key[3:])
                lines += section(f"### Objective `{objective}`: the Benjamini-Hochberg cut", "false discovery rate",
                                 key, sel, report, args.select_seed, args.seeds, objective, rates,
                                 lambda k: k[3:], "chosen")
        out = args.out if len(scales) == 1 else f"{args.out}-s{scale:g}"
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(out + ".md"), "\n".join(lines))
        atomic_write_text(Path(out + ".json"), json.dumps({"chosen": chosen, "other_class_scale": scale,
                                                          "score": args.score,
                                                          "selection": results, "report": report}, indent=1))
        print("\n".join(lines))

if __name__ == "__main__":
    main()
