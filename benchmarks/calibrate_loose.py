"""``ddm run --calibrate``, measured where it was not chosen: the check's advice kept on targets and subsets of its own,
then scored by a plain ``ddm check`` on the check's targets and subsets, which the calibration never saw.

For every workspace given (finished workspaces, e.g. the random draws' ``runs/random/NN`` or the matrix's
``runs/matrix-b/<config>/seed<s>/ddm``; one without a ``ddm check --peers if-explicit,tracin`` result gets one first,
its retrains cached in it), a copy without its ``check/check.json`` is made under ``--root``:

1. ``ddm run -w COPY --calibrate always``: 32 exact retrains (16 random halves and 15 subsets that keep 3 classes
   whole, drawn from ``CALIBRATION_SEED``) scored on test rows outside the check's 200 (``calibration_targets``); its
   advice is kept in the copy's ``config.json``;
2. ``ddm check -w COPY --peers if-explicit,tracin``: the check's own 200 targets and subsets (the retrains the source
   workspace's check cached are copied with it, so it retrains nothing), scoring the calibrated settings beside
   last-layer influence, TracIn and the trivial same-class score.

The source's own check gives the defaults' LDS on the same targets and retrains. Measured once, used for no choice
beyond the trigger (a training cross-entropy above half a uniform guess's, ``ddm.health.LOOSE_FIT``, which was set on
four of the random draws before this script existed).

    python benchmarks/calibrate_loose.py runs/random/01 runs/random-s1/01 ... --root runs/calibrate \\
        --out benchmarks/results/calibrate-loose
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_report  # noqa: E402

from ddm.workspace import atomic_write_text  # noqa: E402

PEERS = "if-explicit,tracin"


def ddm(*args: str) -> dict[str, Any]:
    """One ``ddm`` command with ``--json``; its document, or an error naming the command."""
    cmd = [sys.executable, "-m", "ddm", *args, "--json", "-q"]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed (rc {p.returncode}):\n{p.stderr[-3000:]}")
    return json.loads(p.stdout)


def measure(source: Path, root: Path) -> dict[str, Any]:
    if (source / "check" / "calibration.json").exists():
        raise SystemExit(f"{source} was calibrated by its ddm run: its check scores the calibrated settings already "
                         "(run the draws with random_probes.py --calibrate never for this comparison)")
    name = "-".join(source.parts[1:]) if source.parts[0] == "runs" else "-".join(source.parts)
    dest = root / name
    done = dest / "measured.json"
    if done.exists():
        return json.loads(done.read_text())
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns("check.json", "calibration.json"))
    if not (source / "check" / "check.json").exists():  # the defaults' check, on the source (its retrains cached)
        ddm("check", "-w", str(source), "--peers", PEERS)
    before = json.loads((source / "check" / "check.json").read_text())
    t = time.perf_counter()
    run = ddm("run", "-w", str(dest), "--calibrate", "always")
    seconds = time.perf_counter() - t
    after = ddm("check", "-w", str(dest), "--peers", PEERS)
    cal = run["calibration"]
    out = {"workspace": str(source), "training_fit": run["model"].get("training_fit"),
           "test_accuracy": run["model"]["test_accuracy"], "advice": cal.get("advice"),
           "calibration_lds": cal.get("lds"), "calibration_damping": (cal.get("damping") or {}).get("by_scale"),
           "calibration_targets": cal.get("targets"), "disjoint": cal.get("targets_disjoint_from_check"),
           "run_seconds": seconds, "calibration_seconds": cal.get("seconds"),
           "default": {"lds": before["lds"], "other_class_lds": before.get("other_class_lds")},
           "calibrated": {"lds": after["lds"], "other_class_lds": after.get("other_class_lds"),
                          "advice_after": after.get("advice")}}
    atomic_write_text(done, json.dumps(out, indent=1))
    return out


def would_calibrate(r: dict[str, Any]) -> tuple[float, bool]:
    """``(estimated seconds, calibrated by --calibrate auto)`` for the source workspace of row ``r``, from its stage
    records, as ``ddm run`` decides it."""
    from ddm.cli.parser import CALIBRATE_BUDGET, CALIBRATE_BUDGET_LOOSE
    from ddm.evaluation.check import calibration_cost

    src = Path(r["workspace"])
    seconds = {st: json.loads((src / st / "stage.json").read_text()).get("seconds") or 0.0
               for st in ("train", "synset")}
    run = src.parent / f"{src.name}.run.json"  # a random draw's `ddm run` record; the matrix's groups never mix
    groups = json.loads(run.read_text())["out"].get("groups", {}) if run.exists() else {}
    _, estimate = calibration_cost(seconds["train"], seconds["synset"], groups.get("most_classes", 1) > 1)
    loose = bool((r["training_fit"] or {}).get("loose"))
    return estimate, estimate <= (CALIBRATE_BUDGET_LOOSE if loose else CALIBRATE_BUDGET)


def _m(d: dict[str, Any] | None, key: str) -> str:
    v = (d or {}).get(key)
    return "–" if v is None else f"{v['mean']:+.3f}"


def render(rows: list[dict[str, Any]]) -> str:
    lines = ["| workspace | fit (of ln C) | kept by the calibration | LDS default → calibrated | influence | TracIn | "
             "trivial | other-class LDS default → calibrated | calibration s (estimated; by `auto`) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        d, c = r["default"], r["calibrated"]
        advice = ", ".join(f"{k.split('.')[-1]}={v:g}" for k, v in (r["advice"] or {}).items()) or "nothing"
        fit = r["training_fit"] or {}
        estimate, auto = would_calibrate(r)
        lines.append(f"| {r['workspace']} | {fit.get('ratio', float('nan')):.2f} | {advice} | "
                     f"{_m(d['lds'], 'DDM')} → **{_m(c['lds'], 'DDM')}** | {_m(c['lds'], 'if-explicit')} | "
                     f"{_m(c['lds'], 'tracin')} | {_m(c['lds'], 'same class (trivial)')} | "
                     f"{_m(d['other_class_lds'], 'DDM')} → {_m(c['other_class_lds'], 'DDM')} | "
                     f"{r['calibration_seconds'] or 0:.0f} ({estimate:.0f}; {'yes' if auto else 'no'}) |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("workspaces", nargs="+", type=Path)
    ap.add_argument("--root", type=Path, default=Path("runs/calibrate"))
    ap.add_argument("--out", type=Path, default=None, help="write OUT.md and OUT.json")
    args = ap.parse_args()
    args.root.mkdir(parents=True, exist_ok=True)
    rows = []
    for w in args.workspaces:
        print(f"[{w}]", flush=True)
        rows.append(measure(w, args.root))
        print(render(rows[-1:]).splitlines()[-1], flush=True)
    text = render(rows)
    if args.out:
        cmd = "python benchmarks/calibrate_loose.py " + " ".join(map(str, args.workspaces))
        write_report(str(args.out), f"# `ddm run --calibrate` on held-out targets and subsets (`{cmd}`)\n\n{text}\n",
                     rows)
    else:
        print(text)


if __name__ == "__main__":
    main()
