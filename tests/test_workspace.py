import pytest
import torch

from ddm.exceptions import ConfigMismatchError, MissingArtifactError
from ddm.workspace import Workspace, cached_json, load_tensors, save_json, save_tensors


def test_construction_touches_nothing(tmp_path):
    Workspace(tmp_path / "ws")
    assert not (tmp_path / "ws").exists()


def test_atomic_tensor_write_leaves_no_temporary_files(tmp_path):
    save_tensors(tmp_path / "a.safetensors", {"x": torch.arange(3)})
    save_tensors(tmp_path / "a.safetensors", {"x": torch.arange(4)})
    assert load_tensors(tmp_path / "a.safetensors")["x"].tolist() == [0, 1, 2, 3]
    assert [p.name for p in tmp_path.iterdir()] == ["a.safetensors"]


def test_stage_reuse_mismatch_and_overwrite(tmp_path):
    ws = Workspace(tmp_path)
    assert not ws.is_done("train", "k1", {})
    ws.begin("train", "k1", {"lr": 1})
    assert not ws.is_done("train", "k1", {"lr": 1})  # started, not finished
    ws.finish("train", "k1", {"lr": 1})
    assert ws.is_done("train", "k1", {"lr": 1})
    with pytest.raises(ConfigMismatchError, match="new workspace folder, or pass --overwrite") as err:
        ws.is_done("train", "k2", {"lr": 2})
    # no config.json: a run killed after its first stages; the error says how to resume it
    assert "did not finish" in str(err.value) and "same options" in str(err.value)
    save_json(tmp_path / "config.json", {})
    with pytest.raises(ConfigMismatchError) as err:
        ws.is_done("train", "k2", {"lr": 2})
    assert "did not finish" not in str(err.value)
    ws2 = Workspace(tmp_path, overwrite=True)
    assert not ws2.is_done("train", "k2", {"lr": 2})
    assert not (tmp_path / "train").exists()


def test_the_checks_cached_stages_follow_a_changed_workspace_without_overwrite(tmp_path):
    ws = Workspace(tmp_path)
    ws.begin("check/synset-t2", "old", {"inputs": 1})
    ws.finish("check/synset-t2", "old", {"inputs": 1})
    assert not ws.is_done("check/synset-t2", "new", {"inputs": 2})  # the model changed since: recomputed
    assert not (tmp_path / "check" / "synset-t2").exists()


def test_unfinished_stage_with_other_key_is_discarded(tmp_path):
    ws = Workspace(tmp_path)
    ws.begin("distill", "old", {})
    save_json(tmp_path / "distill" / "junk.json", {})
    assert not ws.is_done("distill", "new", {})
    assert not (tmp_path / "distill").exists()


def test_require_says_which_command_to_run(tmp_path):
    with pytest.raises(MissingArtifactError, match="ddm run"):
        Workspace(tmp_path).require("synset")


def test_cached_json_reuses_only_a_result_stored_under_the_same_key(tmp_path):
    calls = []

    def compute(value):
        calls.append(value)
        return {"value": value, "pair": (1, 2)}

    path = tmp_path / "seed0" / "result.json"
    first = cached_json(path, "k1", lambda: compute(1))
    assert first == {"value": 1, "pair": [1, 2]}  # JSON types even when freshly computed
    assert cached_json(path, "k1", lambda: compute(2)) == first and calls == [1]
    assert cached_json(path, "k2", lambda: compute(3))["value"] == 3 and calls == [1, 3]
    assert sorted(p.name for p in path.parent.iterdir()) == ["result.json"]  # no temporary files left


def test_a_mismatch_names_only_the_differing_fields(tmp_path):
    from ddm.exceptions import ConfigMismatchError
    from ddm.workspace import Workspace

    ws = Workspace(tmp_path)
    ws.begin("train", "k1", {"train": {"epochs": 4, "lr": 0.1}, "model": {"width": 8}})
    ws.finish("train", "k1", {"train": {"epochs": 4, "lr": 0.1}, "model": {"width": 8}})
    with pytest.raises(ConfigMismatchError) as err:
        ws.is_done("train", "k2", {"train": {"epochs": 5, "lr": 0.1}, "model": {"width": 8}})
    assert "train.epochs: 4 -> 5" in str(err.value) and "width" not in str(err.value)


def test_artifacts_follow_the_umask(tmp_path):
    import os

    import torch

    from ddm.workspace import save_json, save_tensors

    old = os.umask(0o022)
    try:
        save_json(tmp_path / "a.json", {"x": 1})
        save_tensors(tmp_path / "t.safetensors", {"x": torch.zeros(2)})
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "t.safetensors").stat().st_mode & 0o777 == 0o644


def test_a_second_process_waits_for_the_workspace_lock(tmp_path, caplog):
    import subprocess
    import sys
    import threading
    import time

    ws = Workspace(tmp_path / "ws")
    held, release = tmp_path / "held", tmp_path / "release"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import pathlib, sys, time\n"
        "from ddm.workspace import Workspace\n"
        f"with Workspace({str(ws.root)!r}).lock('fit'):\n"
        f"    pathlib.Path({str(held)!r}).touch()\n"
        f"    while not pathlib.Path({str(release)!r}).exists():\n"
        "        time.sleep(0.02)\n")])
    try:
        for _ in range(500):
            if held.exists():
                break
            time.sleep(0.02)
        assert held.exists(), "the holder never took the lock"
        assert f"ddm process {holder.pid} (fit" in (ws.root / ".lock").read_text()
        got = threading.Event()

        def take() -> None:
            with ws.lock("run"):
                got.set()
                with ws.lock("nested"):  # re-entrant within this process
                    pass

        with caplog.at_level("WARNING", logger="ddm.workspace"):
            t = threading.Thread(target=take)
            t.start()
            time.sleep(0.5)
            assert not got.is_set()  # waits while the other process holds it
            release.touch()
            t.join(timeout=30)
        assert got.is_set()
        assert f"waiting for ddm process {holder.pid} (fit" in caplog.text
    finally:
        release.touch()
        holder.wait(timeout=30)
    assert (ws.root / ".lock").read_text() == ""  # released: no holder named
    with ws.lock("again"):  # and free to take at once
        pass


def test_the_lock_steps_aside_where_it_cannot_be_taken(tmp_path, monkeypatch, caplog):
    """A file system without locks (some network mounts) or a lock file that cannot be opened (a read-only
    workspace) must not stop work that needs no guard: the block runs unguarded."""
    import errno
    import fcntl
    import logging

    ws = Workspace(tmp_path / "ws")

    def no_locks(f, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    ran = []
    with caplog.at_level(logging.INFO, logger="ddm.workspace"), ws.lock("fit"):
        ran.append(1)
    assert ran and "cannot be locked on this file system" in caplog.text
    monkeypatch.undo()
    other = Workspace(tmp_path / "ro")
    (other.root / ".lock").mkdir(parents=True)  # cannot be opened as a file
    with other.lock("fit"):
        ran.append(2)
    assert ran == [1, 2]
