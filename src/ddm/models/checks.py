"""Checks of a model handed to ``fit`` and of the parameters loaded into it: what every stage assumes of the model."""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from ddm import devices
from ddm import models as model_registry
from ddm.config import RunConfig
from ddm.data.dataset import Split
from ddm.exceptions import ConfigError, MissingArtifactError, NumericalError
from ddm.train.trajectory import Trajectory
from ddm.workspace import load_tensors

log = logging.getLogger(__name__)


def warn_model_mismatch(model: nn.Module, config: RunConfig) -> None:
    """Say when ``model`` was built by :func:`ddm.models.build` with settings other than ``config.model``'s: the
    workspace trains and keeps the model it is given (``train/model.json``), so the configuration's model section,
    stored in ``config.json`` too, does not describe it. Models of the user's own carry no settings to compare."""
    given = model_registry.spec_of(model).get("config")
    if not isinstance(given, dict):
        return
    wanted = asdict(config.model)
    differ = {k: (given[k], wanted[k]) for k in given.keys() & wanted.keys() if given[k] != wanted[k]}
    if differ:
        what = ", ".join(f"{k} {g!r} (the configuration: {w!r})" for k, (g, w) in sorted(differ.items()))
        log.warning("the model given to fit() is not the one the configuration's model section describes: %s. The "
                    "workspace keeps the given model (train/model.json); to train the configured one, build it with "
                    "ddm.models.build(config.model, data)", what)


def check_model_output(model: nn.Module, train: Split, num_classes: int) -> None:
    """The model must map a batch of images to one tensor of logits ``[N, num_classes]`` (one output per class):
    what training's cross-entropy, the head matching and every emulation read. A model that returns a tuple, an
    extra axis or another number of outputs is refused here, before any training, saying what it returned."""
    if len(train) == 0:
        return
    odd = sorted({str(p.dtype).replace("torch.", "") for p in model.parameters()
                  if p.is_floating_point() and p.dtype != torch.float32})
    if odd:
        raise ConfigError(f"the model's parameters are {', '.join(odd)}; ddm trains and reads models in float32 "
                          "(the images are float32): build it in float32 (without .double() or .half())")
    was = model.training
    model.eval()  # a batch norm's running statistics stay as they are
    try:
        with torch.no_grad():
            out = model(train.x[:2].to(devices.of(model)))
    except Exception as e:  # a model that cannot take the data's images at all
        raise ConfigError(f"the model fails on the first training images (shape {tuple(train.x.shape[1:])}): "
                          f"{type(e).__name__}: {e}. Build it for images of that shape (a factory may take "
                          "image_shape and num_classes)") from e
    finally:
        model.train(was)
    if not isinstance(out, torch.Tensor):
        raise ConfigError(f"the model's forward returns a {type(out).__name__}, not a tensor: ddm needs the logits "
                          f"alone, one tensor [N, {num_classes}]; wrap the model so that forward returns only them "
                          "(e.g. `return self.net(x)[0]` where the logits come first)")
    if out.ndim == 2 and out.shape[1] == num_classes:
        from ddm.distill.scope import adopt_logits_head

        adopt_logits_head(model, train.x[:8].to(devices.of(model)))  # before the train stage records the model's spec
        return
    if out.ndim != 2 or out.shape[1] != num_classes:
        shape = ", ".join(str(n) for n in out.shape)
        hint = (f"build its output layer with {num_classes} outputs (a factory may take num_classes)"
                if out.ndim == 2 else "return [N, classes] logits (e.g. flatten or squeeze the extra axes)")
        n = len(out) if out.ndim else 0
        raise ConfigError(f"the model returns logits of shape [{shape}] for {n} image(s), where ddm needs [{n}, "
                          f"{num_classes}]: one output per class of the data ({num_classes} classes); {hint}")


def check_last_snapshot(model: nn.Module, trajectory: Trajectory) -> None:
    """A handed-in trajectory must end at the model handed in with it: theta_tau is what every stage reads, and
    ``fit`` loads it into the model. A recorder attached every n steps misses the steps after its last snapshot."""
    final = trajectory.final
    with torch.no_grad():
        off = [n for n, p in model.named_parameters()
               if n in final and (final[n].shape != p.shape
                                  or not torch.allclose(p.detach().cpu().to(final[n].dtype), final[n].cpu(),
                                                        rtol=1e-5, atol=1e-6))]
    if off:
        raise ConfigError(f"the trajectory's last snapshot (epoch {trajectory.epochs[-1]:g}) is not the model handed "
                          f"in ({len(off)} parameter tensor(s) differ, e.g. {off[0]!r}): the model trained on after "
                          "it was recorded. Record theta once more after the last optimizer step (rec.record(epoch)) "
                          "and pass that trajectory")


def load_params(model: nn.Module, params: dict[str, torch.Tensor], stored: Path | None = None) -> None:
    """theta_tau into ``model``, with the buffers (running statistics) of the train stage's ``stored`` model file."""
    names = dict(model.named_parameters())
    missing = set(names) - set(params)
    if missing:
        raise MissingArtifactError(f"stored parameters do not fit the model (missing {sorted(missing)[:3]}...)")
    bad = [k for k in names if not torch.isfinite(params[k]).all()]
    if bad:
        raise NumericalError(f"the trained model's parameters hold non-finite values ({bad[:3]}); the train stage "
                             "is damaged or diverged: rerun it with --overwrite (and a smaller train.lr if it "
                             "diverged)")
    with torch.no_grad():
        for k, p in names.items():
            p.copy_(params[k])
    buffers = dict(model.named_buffers())
    if not buffers or stored is None:
        return
    saved = load_tensors(stored) if stored.exists() else {}
    unset = [k for k, b in buffers.items() if k not in saved and b.is_floating_point()]
    if unset:
        log.warning("the train stage holds no value for the model's buffers %s (a workspace from before ddm stored "
                    "them): they keep the rebuilt model's initial values, so a batch norm's outputs are not the "
                    "trained model's; rerun the train stage with --overwrite", unset[:3])
    with torch.no_grad():
        for k, b in buffers.items():
            if k in saved:
                b.copy_(saved[k])


def warn_small_norm_maps(model: nn.Module) -> None:
    """Say when ``model`` is a ConvNet whose instance norm normalises a channel over 2x2 values or fewer (too many
    blocks for its images): on the 8x8 digits such a network's exact retrains without a tenth of the data lost whole
    classes, and DDM ranked other classes' groups the wrong way round where it was trained at a high rate; with one
    block fewer neither happened (BENCHMARKS.md, "The last block's instance norm on 2x2 maps")."""
    n = getattr(model, "smallest_norm_map", None)
    if isinstance(n, int) and 1 < n <= 4:
        log.warning("the ConvNet's last block instance-normalises each channel over %d values (maps of 2x2 or fewer): "
                    "such a network trains fragilely (on the 8x8 digits its exact retrains without a tenth of the data "
                    "lost whole classes) and DDM's ranking across classes suffered; one block fewer (model.depth) or "
                    "model.norm=groupnorm avoids it (BENCHMARKS.md, \"The last block's instance norm on 2x2 maps\")",
                    n)


def refuse_batchnorm(model: nn.Module | None, what: str) -> None:
    """The trajectory matchers and fine-tuning emulations differentiate the whole network through
    ``functional_call``: BatchNorm's running statistics would stay frozen at theta_tau's (eval mode) or break
    ``vmap`` (train mode). The head recipe reads the network in eval mode and moves only the last layer."""
    if model is not None and any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        raise ConfigError(f"{what} cannot fine-tune a model with BatchNorm (its running statistics would not follow "
                          "the emulated training): use the head recipe (the default; it moves only the last layer "
                          "and reads BatchNorm in eval mode) or replace BatchNorm with GroupNorm (as ddm's resnet)")
