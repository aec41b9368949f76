"""Device selection (``--device``), and workspaces that do not depend on the device they were made on."""

import json

import pytest
import torch

import ddm
from ddm import devices, presets
from ddm.cli.main import main
from ddm.exceptions import ConfigError
from ddm.workspace import load_tensors

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")


def test_device_names_resolve_or_say_what_the_machine_has():
    assert devices.resolve("cpu") == torch.device("cpu")
    assert devices.resolve(torch.device("cpu")) == torch.device("cpu")
    auto = devices.resolve("auto")
    assert auto.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert devices.resolve(None) == auto and devices.resolve(" AUTO ") == auto
    with pytest.raises(ConfigError, match="not a device"):
        devices.resolve("gpu please")
    with pytest.raises(ConfigError, match="float64"):
        devices.resolve("mps")
    with pytest.raises(ConfigError, match="not supported"):
        devices.resolve("meta")


@no_cuda
def test_cuda_on_a_machine_without_it_is_a_clear_error(tmp_path, capsys):
    for name in ("cuda", "cuda:1"):
        with pytest.raises(ConfigError, match="no CUDA device"):
            devices.resolve(name)
    # the CLI stops before loading any data, with the message and exit status 2
    assert main(["run", "-w", str(tmp_path / "ws"), "--preset", "tiny", "--device", "cuda", "-q"]) == 2
    assert "no CUDA device" in capsys.readouterr().err
    assert not (tmp_path / "ws" / "train").exists()


def test_auto_gives_each_torchrun_process_its_own_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert devices.resolve("auto") == torch.device("cuda:0")
    monkeypatch.setenv("LOCAL_RANK", "3")  # more processes than GPUs: round robin
    assert devices.resolve("auto") == torch.device("cuda:1")
    with pytest.raises(ConfigError, match="there are 2 CUDA devices"):
        devices.resolve("cuda:2")


def test_placed_moves_a_model_for_a_block_and_back():
    net = torch.nn.Linear(3, 2)
    with devices.placed(net, None) as dev:
        assert dev == torch.device("cpu")
    with devices.placed(net, "cpu") as dev:
        assert devices.of(net) == dev
    assert devices.of(net) == torch.device("cpu") and devices.of(torch.nn.ReLU()) == torch.device("cpu")
    x = torch.randn(4, 3)
    assert torch.equal(devices.forward(net, x), net(x).detach())
    other = {k: v + 1 for k, v in net.named_parameters()}
    assert torch.allclose(devices.forward(net, x, other), torch.func.functional_call(net, other, (x,)))


def test_the_device_is_the_sessions_not_the_workspaces(tmp_path, monkeypatch):
    cfg = presets.tiny().with_overrides(["hierarchical=false", "distill.iterations=5", "device=cpu"])
    data = ddm.data.load(cfg.data)
    dm = ddm.DistilledDatamodel(tmp_path, cfg).fit(ddm.models.build(cfg.model, data), data.train)
    assert dm.device() == torch.device("cpu")
    # stored device-free: the config says auto, every tensor file holds CPU tensors
    assert json.loads((tmp_path / "config.json").read_text())["device"] == "auto"
    for f in tmp_path.rglob("*.safetensors"):
        assert all(t.device.type == "cpu" for t in load_tensors(f).values())
    # opened by another session: its own device, the workspace's stages unchanged
    again = ddm.DistilledDatamodel(tmp_path, presets.tiny().with_overrides(["device=auto"])).load()
    assert again.config.device == "auto" and again.config.distill == dm.config.distill
    a = again.attribute(data.test[:3], "dist2")
    b = dm.attribute(data.test[:3], "dist2")
    assert torch.allclose(a.weights, b.weights)
    assert devices.of(dm.model) == torch.device("cpu")  # given back where the caller keeps it
    # the recipes that fine-tune or match trajectories run on the CPU only: said before any work
    monkeypatch.setattr(devices, "resolve", lambda spec="auto": torch.device("cuda"))
    ft = ddm.DistilledDatamodel(tmp_path / "ft", cfg.with_overrides(presets.recipe("local-free")))
    with pytest.raises(ConfigError, match="CPU only"):
        ft.device()
    assert again.device() == torch.device("cuda")  # the head recipe may go there


def test_predict_is_an_inference_that_leaves_batch_norm_statistics_and_the_mode_as_they_were():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))
    net.train()
    net(torch.randn(64, 3) + 2)  # running statistics away from the initial ones
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.randn(10, 3)
    out = devices.predict(net, x, batch=4)  # three batches, each normalised with the running statistics
    assert net.training  # given back in the mode it was in
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # nothing moved
    net.eval()
    with torch.no_grad():
        assert torch.allclose(out, net(x), atol=1e-6)
    net.train()
    with torch.no_grad():
        assert not torch.allclose(out, net(x), atol=1e-3)  # what a train-mode forward would have given
