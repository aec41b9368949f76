"""Two torchrun processes (gloo, this 2-core machine) give the results of one process (to float rounding where
they share the head distillation's groups)."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TORCHRUN = Path(sys.executable).with_name("torchrun")
ARGS = ["evaluate", "--preset", "tiny", "--seeds", "0", "--num-targets", "3", "--lds-subsets", "4",
        "--noise-seeds", "1", "-q"]


def _flat(d, p=""):
    if isinstance(d, dict):
        return {k: v for key, val in d.items() for k, v in _flat(val, f"{p}/{key}").items()}
    if isinstance(d, list):
        return {k: v for i, val in enumerate(d) for k, v in _flat(val, f"{p}[{i}]").items()}
    return {p: d}


def _timing(key: str) -> bool:
    last = key.split("/")[-1].split("[")[0]
    return last.endswith("_s") or "second" in last or last.startswith("speedup")


@pytest.mark.skipif(not TORCHRUN.exists() and shutil.which("torchrun") is None, reason="torchrun not installed")
def test_two_ranks_equal_one_process(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # torchrun's default per rank; float sums depend on it
    one = subprocess.run([sys.executable, "-m", "ddm", *ARGS, "-w", str(tmp_path / "one")], env=env,
                         capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr
    exe = str(TORCHRUN) if TORCHRUN.exists() else "torchrun"
    two = subprocess.run([exe, "--standalone", "--nproc_per_node=2", "-m", "ddm", *ARGS, "-w", str(tmp_path / "two")],
                         env=env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    a = _flat(json.loads((tmp_path / "one" / "evaluation.json").read_text()))
    b = _flat(json.loads((tmp_path / "two" / "evaluation.json").read_text()))
    assert a.keys() == b.keys()
    # the head distillation shares its groups among the ranks: its sums run over other batch shapes, so floats
    # agree to rounding (about 1e-7 relative); everything else is exactly equal
    differ = [k for k in a if not _timing(k) and not (
        a[k] == b[k] or (isinstance(a[k], float) and isinstance(b[k], float)
                         and math.isclose(a[k], b[k], rel_tol=1e-5, abs_tol=1e-7)))]
    assert not differ, [(k, a[k], b[k]) for k in differ[:10]]
    synset = json.loads((tmp_path / "two" / "seed0" / "DDM-full" / "synset" / "stage.json").read_text())
    assert synset["ranks"] == 2  # both ranks distilled their share of the groups
    # both ranks wrote their share of the exact retrains into the one shared folder
    retrains = list((tmp_path / "two" / "seed0" / "retrain").rglob("*.safetensors"))
    assert len(retrains) == len(list((tmp_path / "one" / "seed0" / "retrain").rglob("*.safetensors")))
