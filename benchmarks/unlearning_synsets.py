"""Unlearning and the synset stage's decisions with one workspace's synsets against another's (a test harness).

Run once per code version or setting, each into its own workspace folder beside the matrix's run (``--folder``; the
matrix's own, ``ddm``, is reused as it is), then ``--compare`` two of the JSON files. Per run: the synset stage's
decisions (temperature, class balance and the agreements behind them), its cost, health and nearest-training-image
cosine; LDS and other-class LDS on the reported targets against the matrix's retrains; and ``ddm unlearn`` on the
matrix's three 4-group draws, its two whole-class removals and ``backoff_thinned.py``'s three thinning draws, against
exact retraining in the target's data order (the retrains cached under the run).

    python benchmarks/unlearning_synsets.py --root runs/matrix-b --seeds 0 --configs digits-convnet-K100-sgd \\
        --folder ddm --out benchmarks/results/unlearning-synsets-before
    python benchmarks/unlearning_synsets.py --compare A.json,B.json --out benchmarks/results/unlearning-synsets
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matrix as M  # noqa: E402
from backoff_thinned import thinning_draws  # noqa: E402
from temperature_unlearning import accs  # noqa: E402

from ddm import devices, progress  # noqa: E402
from ddm.evaluation.privacy import synset_similarity  # noqa: E402


def run(name: str, seed: int, root: Path, folder: str, sets: list[str]) -> dict[str, Any]:
    _, data, _, dm, cache = M.open_run(root, name, seed, folder, sets)
    dm.model.eval()
    st = dm.ws.stage_info("synset") or {}
    health = st.get("health", {})
    out: dict[str, Any] = {
        "config": name, "seed": seed, "folder": folder, "temperature": dm.synset_temperature,
        "balance": list(dm.class_balance), "step_agreement": st.get("step_agreement"),
        "step_agreement_at_1": st.get("step_agreement_at_1"), "other_class_agreement": st.get("other_class_agreement"),
        "distill_seconds": st.get("seconds"), "ipc": int(dm.synset.images.shape[1]),
        "cosine_mean": health.get("cosine_mean"), "flagged": len(health.get("flagged", [])),
        "nearest_cosine": synset_similarity(dm.synset, data.train.x)}
    # attribution: the reported targets (test rows 0-49 of the fixed permutation), the matrix's subsets and retrains
    v = M.ValidationTargets(dm, cache, data, seed, select=False)
    attr = dm.attribute(v.targets, "dist2", name="unlearning-synsets")
    out["lds"] = v.score(lambda k, sel: attr.predict(k)[:, sel, 0])
    y = data.test.y
    draws = M.unlearning_draws(dm, int(data.num_classes)) + thinning_draws(dm, int(data.num_classes), seed)
    out["draws"] = []
    for label, rem in draws:
        on = y == int(label.split()[-1]) if label.startswith("thin") else None  # the thinned class's test rows
        exact, exact_class = accs(cache.get(rem), y, on)
        mine, mine_class = accs(devices.predict(dm.unlearn(rem, name="unlearning-synsets"), data.test.x), y, on)
        row = {"draw": label, "groups": rem, "exact": exact, "ddm": mine}
        if on is not None:
            row["exact_class"], row["ddm_class"] = exact_class, mine_class
        out["draws"].append(row)
    return out


def kind(label: str) -> str:
    return "4 groups" if label == "4 groups" else "class" if label == "class" else "thinning"


def compare(files: list[str], out: str) -> None:
    a, b = (json.loads(Path(f).read_text()) for f in files)
    keyed = {(r["config"], r["seed"]): r for r in a}
    pairs = [(keyed[(r["config"], r["seed"])], r) for r in b if (r["config"], r["seed"]) in keyed]
    names = [Path(f).stem for f in files]
    lines = ["# Unlearning and the synset stage's decisions: two workspaces' synsets side by side", "",
             f"Command: `python benchmarks/unlearning_synsets.py {' '.join(sys.argv[1:])}`; A = {names[0]}, "
             f"B = {names[1]}; {len(pairs)} runs. Test accuracy in %; gap = |DDM - exact| (exact retraining, target's "
             "data order).", "",
             "| draws | A: mean gap, within | B: mean gap, within | draws whose gap grew by more than 3 points |",
             "|---|---|---|---|"]
    for k, bar in (("4 groups", 3), ("class", 5), ("thinning", 5)):
        ga, gb = [], []
        for x, y in pairs:
            for ra, rb in zip(x["draws"], y["draws"], strict=True):
                assert ra["groups"] == rb["groups"]
                if kind(ra["draw"]) == k:
                    ga.append(100 * abs(ra["ddm"] - ra["exact"]))
                    gb.append(100 * abs(rb["ddm"] - rb["exact"]))
        if not ga:
            continue
        worse = sum(q - p > 3 for p, q in zip(ga, gb, strict=True))
        lines.append(f"| {k} (within {bar}) | {np.mean(ga):.2f}, {sum(g <= bar for g in ga)}/{len(ga)} | "
                     f"{np.mean(gb):.2f}, {sum(g <= bar for g in gb)}/{len(gb)} | {worse} |")
    cls = [(100 * abs(ra["ddm_class"] - ra["exact_class"]), 100 * abs(rb["ddm_class"] - rb["exact_class"]))
           for x, y in pairs for ra, rb in zip(x["draws"], y["draws"], strict=True) if "exact_class" in ra]
    if cls:
        lines += ["", f"Thinned class's own accuracy from exact retraining's: A {np.mean([c[0] for c in cls]):.1f} "
                  f"points, B {np.mean([c[1] for c in cls]):.1f}."]
    lines += ["", "| configuration | seed | temperature A / B | balance A / B | step agreement A / B | other-class "
              "agreement A / B | LDS / other-class A | B | distil s A / B | images | health cosine A / B | flagged "
              "A / B | nearest-image cosine A / B | largest gap change (points) |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for x, y in pairs:
        change = max((100 * (abs(rb["ddm"] - rb["exact"]) - abs(ra["ddm"] - ra["exact"])) for ra, rb in
                      zip(x["draws"], y["draws"], strict=True)), key=abs)
        f = lambda v: "–" if v is None else f"{v:.3f}"  # noqa: E731
        lines.append(
            f"| {x['config']} | {x['seed']} | {x['temperature']:g} / {y['temperature']:g} | {x['balance'][0]:g} / "
            f"{y['balance'][0]:g} | {f(x['step_agreement'])} / {f(y['step_agreement'])} | "
            f"{f(x['other_class_agreement'])} / {f(y['other_class_agreement'])} | {x['lds'][0]:.3f} / "
            f"{x['lds'][1]:+.3f} | {y['lds'][0]:.3f} / {y['lds'][1]:+.3f} | {x['distill_seconds']:.1f} / "
            f"{y['distill_seconds']:.1f} | {x['ipc']} / {y['ipc']} | {f(x['cosine_mean'])} / {f(y['cosine_mean'])} | "
            f"{x['flagged']} / {y['flagged']} | {x['nearest_cosine']:.3f} / {y['nearest_cosine']:.3f} | "
            f"{change:+.1f} |")
    M.write_report(out, lines, {"files": files})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default="runs/matrix-b")
    p.add_argument("--configs", default="")
    p.add_argument("--seeds", default="0")
    p.add_argument("--folder", default="ddm", help="the workspace folder under each run (ddm: the matrix's own)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--compare", default=None, metavar="A.json,B.json")
    p.add_argument("--out", default="benchmarks/results/unlearning-synsets")
    args = p.parse_args()
    torch.set_num_threads(1)
    progress.set_enabled(False)
    if args.compare:
        compare(args.compare.split(","), args.out)
        return
    results = []
    for name in args.configs.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            results.append(run(name, seed, Path(args.root), args.folder, args.set))
            print(json.dumps({k: v for k, v in results[-1].items() if k != "draws"}), flush=True)
            out = Path(args.out)
            out.parent.mkdir(parents=True, exist_ok=True)
            M.atomic_write_text(out.with_suffix(".json"), json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
