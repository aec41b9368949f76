"""The GPU benchmark's reduced run (`benchmarks/gpu.py --smoke`) completes here, on the CPU, in real formats."""

import importlib.util
import json
import math
from pathlib import Path

from test_data import write_cifar


def _gpu_bench():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu.py"
    spec = importlib.util.spec_from_file_location("gpu_bench", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_smoke_run_trains_distils_attributes_and_retrains(tmp_path):
    folder = tmp_path / "cifar" / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    for i in range(1, 6):
        write_cifar(folder / f"data_batch_{i}.bin", 60, 1, 10)  # CIFAR-10's binary format, random pixels
    write_cifar(folder / "test_batch.bin", 60, 1, 10)
    out = tmp_path / "result"
    assert _gpu_bench().main(["--smoke", "--datasets", "digits,cifar10", "--cifar-dir", str(tmp_path / "cifar"),
                              "--root", str(tmp_path / "runs"), "--out", str(out), "--device", "cpu"]) == 0
    results = json.loads(out.with_suffix(".json").read_text())
    assert [r["dataset"].split(":")[0] for r in results] == ["digits", "cifar10"]
    for r in results:
        assert r["device"] == "cpu" and r["K"] == 20
        assert "3x32x32" in r["dataset"]  # digits padded and repeated to CIFAR's shape
        assert math.isfinite(r["lds"]) and -1 <= r["lds"] <= 1 and r["speedup_online"] > 0
        assert r["health"]["checked"] and r["memory"]["host_max_rss_gib"] > 0
        assert all(v >= 0 for v in r["seconds"].values())
    table = out.with_suffix(".md").read_text()
    assert table.count("| cpu |") == 2 and "nan" not in table.lower()
