"""The groups' own gradients in place of the synsets' in the attribution's Newton step (``emulate.gradients``).

For each workspace ``ddm check`` has retrained: the gradients are stored if missing (as ``ddm distill`` would), then
DDM is scored both ways on the check's 200 targets, its 16 random halves (LDS) and its other-class subsets
(other-class LDS), beside the check's stored scores of the trivial same-class row and of the peers it ran. The test
this answers was written before it ran: ``benchmarks/results/group-gradients-criterion.md``.

    python benchmarks/group_gradients.py runs/noisy/img-s2-step runs/rewind-probe/c100 ... \
        --out benchmarks/results/group-gradients-test
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matrix as M  # noqa: E402

from ddm import objectives, progress  # noqa: E402
from ddm.workspace import load_json  # noqa: E402


def score(ws: str) -> dict[str, float | None]:
    from ddm.evaluation.check import _spearman_columns

    dm, data, targets, rows, truth, keep, actual = M.check_halves(ws)
    other = M.check_other_class(dm, data, targets, rows, truth)
    assert dm.synset is not None and dm.groups is not None
    dm.store_group_gradients(data.train)
    obj = objectives.get("dist2")
    base = dm.config
    out: dict[str, float | None] = {}
    for mode in ("synsets", "groups"):
        dm.config = base.with_overrides([f"emulate.gradients={mode}"])
        dm.model.eval()  # as the public attribute() runs it (a batch norm's running statistics)
        try:
            attr = dm._attribute_flat(targets, obj, dm.synset, dm.keys["synset"], dm.groups, "groups")
        finally:
            dm.config = base
        pred = attr.predict(keep)[..., 0]
        out[f"{mode} LDS"] = float(_spearman_columns(pred.double().numpy(), actual.double().numpy()).mean())
        if other is not None:
            masks, sel, loss = other
            p = attr.predict(masks)[..., 0][:, sel]
            out[f"{mode} other"] = float(_spearman_columns(p.double().numpy(), loss.double().numpy()).mean())
        else:
            out[f"{mode} other"] = None
    check = load_json(Path(ws) / "check" / "check.json")
    for row, name in (("same class (trivial)", "trivial"), ("if-explicit", "if-explicit")):
        out[f"{name} LDS"] = check["lds"].get(row, {}).get("mean")
        out[f"{name} other"] = (check.get("other_class_lds") or {}).get(row, {}).get("mean")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("workspaces", nargs="+")
    p.add_argument("--out", default=None, help="write <out>.md and <out>.json")
    args = p.parse_args()
    torch.set_num_threads(2)
    progress.set_enabled(False)
    results = {}
    lines = ["| workspace | synsets: LDS / other-class | groups: LDS / other-class | gain | trivial | "
             "last-layer influence |", "|---|---|---|---|---|---|"]

    def f(v: float | None) -> str:
        return "–" if v is None else f"{v:+.3f}"

    for ws in args.workspaces:
        r = score(ws)
        results[ws] = r
        gain_o = (None if r["groups other"] is None or r["synsets other"] is None
                  else r["groups other"] - r["synsets other"])  # type: ignore[operator]
        lines.append(f"| {ws} | {f(r['synsets LDS'])} / {f(r['synsets other'])} | {f(r['groups LDS'])} / "
                     f"{f(r['groups other'])} | {f(r['groups LDS'] - r['synsets LDS'])} / {f(gain_o)} | "  # type: ignore[operator]
                     f"{f(r['trivial LDS'])} | {f(r['if-explicit LDS'])} / {f(r['if-explicit other'])} |")
        print(lines[-1], flush=True)
    if args.out:
        Path(args.out + ".json").write_text(json.dumps(results, indent=2) + "\n")
        Path(args.out + ".md").write_text("```\npython benchmarks/group_gradients.py " + " ".join(args.workspaces)
                                          + f" --out {args.out}\n```\n\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
