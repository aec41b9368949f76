"""The synset stage's two retrain-free decisions computed from the groups' own gradients (a diagnostic).

The synset stage decides two things from its synsets' last-layer steps: the switch to tempered synsets where the step
at theta_tau and the steps at the earlier checkpoints rank removals unlike each other (the step agreement below
``ddm.pipeline.STEP_AGREEMENT_WARN``, ``distill.auto_temperature``), and the class balance where the other classes'
weights disagree between the two (``emulate.switched_class_agreement``). Since 0.20 the attribution's step reads the
groups' own gradients (``emulate.gradients=groups``) at every checkpoint, while both decisions still read the
synthetic images' at the checkpoints they transfer to. This script computes both agreements each way on the plain
(temperature 1) synsets of stored runs, nothing retrained, and says where a decision would differ: the question a
change to the exact agreements would have to answer first.

    python benchmarks/agreement_exact.py --root runs/matrix-b --seeds 0 --configs digits-convnet-K100-sgd \\
        --out benchmarks/results/agreement-exact
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matrix as M  # noqa: E402

from ddm import progress  # noqa: E402
from ddm.distill.head import Head, site_gradients  # noqa: E402
from ddm.pipeline import STEP_AGREEMENT_WARN  # noqa: E402


def agreements(name: str, seed: int, root: Path) -> dict[str, object]:
    cfg, data, folder, dm, _ = M.open_run(root, name, seed)
    switched = dm.synset_temperature != 1
    if switched:  # the decision is taken on the plain synsets: distil them again without the switch
        dm = M.fit_variant(folder, cfg, data, ["distill.auto_temperature=0"])
    dm.model.eval()
    syn, groups = dm.synset, dm.groups
    assert syn is not None and groups is not None and dm.model is not None and dm.trajectory is not None
    by_synsets = dm._agreements(data.train, synset=syn, groups=groups)
    grads = site_gradients(Head.of(dm.model), dm.trajectory, data.train, groups, dm.num_classes, syn, syn.task)
    # exact gradients transfer to every checkpoint: each marked unmeasured, which emulate.min_transfer keeps
    every = [replace(c, cosine_mean=float("nan")) for c in syn.checkpoints]
    by_groups = dm._agreements(data.train, synset=replace(syn, checkpoints=every, group_gradients=grads), groups=groups)
    e = dm.config.emulate
    row: dict[str, object] = {"config": name, "seed": seed, "switched": switched,
                              "checkpoints": len(syn.checkpoints),
                              "transferring": len(syn.transferring(e.min_transfer).checkpoints)}
    for label, both in (("synsets", by_synsets), ("groups", by_groups)):
        step, other = (None, None) if both is None else both
        row[label] = [None if step is None else round(step, 4), None if other is None else round(other, 4)]
        row[f"switch ({label})"] = step is not None and step < STEP_AGREEMENT_WARN
        row[f"balance ({label})"] = (other is not None and e.switched_class_agreement is not None
                                     and other < e.switched_class_agreement)
    row["differs"] = any(row[f"{k} (synsets)"] != row[f"{k} (groups)"] for k in ("switch", "balance"))
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default="runs/matrix-b")
    p.add_argument("--configs", required=True)
    p.add_argument("--seeds", default="0")
    p.add_argument("--out", default="benchmarks/results/agreement-exact")
    args = p.parse_args()
    torch.set_num_threads(1)
    progress.set_enabled(False)
    rows = []
    for name in args.configs.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            rows.append(agreements(name, seed, Path(args.root)))
            print(rows[-1], flush=True)
    fmt = lambda v: "–" if v is None else f"{v:+.3f}"  # noqa: E731
    lines = ["# The synset stage's agreements from the synsets' and from the groups' own gradients (diagnostic)", "",
             f"Command: `python benchmarks/agreement_exact.py {' '.join(sys.argv[1:])}`; plain (temperature 1) "
             f"synsets; step agreement (switch below {STEP_AGREEMENT_WARN:g}) / other-class agreement (the switched "
             "balance below emulate.switched_class_agreement); checkpoints the synsets transfer to / recorded.", "",
             "| configuration | seed | switched by the stage | checkpoints | synsets | groups' gradients | "
             "a decision differs |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        s, g = r["synsets"], r["groups"]
        lines.append(f"| {r['config']} | {r['seed']} | {'yes' if r['switched'] else 'no'} | "
                     f"{r['transferring']}/{r['checkpoints']} | {fmt(s[0])} / {fmt(s[1])} | "
                     f"{fmt(g[0])} / {fmt(g[1])} | "
                     f"{'**yes**' if r['differs'] else 'no'} |")
    M.write_report(args.out, lines, rows)


if __name__ == "__main__":
    main()
