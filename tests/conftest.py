"""Tiny reusable "testable tasks": a digits subset, a tiny ConvNet and its short trajectory."""

from __future__ import annotations

import importlib.util
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

import ddm
from ddm import progress
from ddm.config import ClusterConfig, TrainConfig
from ddm.train import train_model

progress.set_enabled(False)
torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def fresh_curvatures():
    """Every test computes its head curvatures itself (ddm.distill.head keeps the last few of a process for the next
    distillation on the same model and data; a test that breaks a decomposition on purpose must meet it)."""
    from ddm.distill.head import clear_curvature_cache

    clear_curvature_cache()
    yield
    clear_curvature_cache()


@pytest.fixture(autouse=True)
def no_calibration(monkeypatch):
    """``ddm run`` calibrates a model that fits its training data loosely, as the tiny preset's does, with 32 exact
    retrains (``--calibrate auto``); the tests that are not about it run without (their own ``--calibrate`` still
    counts)."""
    from ddm.cli import parser

    monkeypatch.setattr(parser, "CALIBRATE_DEFAULT", "never")


@pytest.fixture(scope="session")
def digits():
    return ddm.data.load("digits", train_size=200, test_size=40)


@pytest.fixture(scope="session")
def trained(digits):
    """(model, trajectory) of a tiny ConvNet trained 3 epochs on 200 digits."""
    model = ddm.models.build("convnet", digits, width=8, depth=2)
    traj = train_model(model, digits.train, TrainConfig(epochs=3, lr=0.1, batch_size=32))
    return model, traj


class Killed(BaseException):
    """A simulated kill -9 (BaseException, so no ``except Exception`` in ddm can swallow it)."""


@pytest.fixture
def killed_at_write():
    """``with killed_at_write(module, n): run()``: ``module.save_tensors`` dies on its ``n``-th call (0-based),
    before writing; the block must end in that kill, and the real function is back afterwards."""

    @contextmanager
    def kill(module, kill_at):
        real, calls = module.save_tensors, {"n": 0}

        def dying(*a, **k):
            if calls["n"] == kill_at:
                raise Killed
            calls["n"] += 1
            return real(*a, **k)

        with pytest.MonkeyPatch.context() as m:
            m.setattr(module, "save_tensors", dying)
            with pytest.raises(Killed):
                yield

    return kill


@pytest.fixture(scope="session")
def groups(digits):
    return ddm.cluster.make_groups(digits.train, ClusterConfig(per_class=2), 10)


@pytest.fixture(scope="session")
def bench():
    """Load a script of ``benchmarks/`` by name as a module (the scripts import their sibling matrix.py)."""
    folder = Path(__file__).resolve().parents[1] / "benchmarks"

    def load(name: str):
        sys.path.insert(0, str(folder))
        try:
            spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
        finally:
            sys.path.remove(str(folder))
        return mod

    return load
