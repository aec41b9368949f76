"""Two torchrun processes (gloo, this 2-core machine) give the results of one process."""

from __future__ import annotations

import json
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
    differ = [k for k in a if not _timing(k) and a[k] != b[k]]
    assert not differ, differ[:10]
    # both ranks wrote their share of the exact retrains into the one shared folder
    retrains = list((tmp_path / "two" / "seed0" / "retrain").rglob("*.safetensors"))
    assert len(retrains) == len(list((tmp_path / "one" / "seed0" / "retrain").rglob("*.safetensors")))
