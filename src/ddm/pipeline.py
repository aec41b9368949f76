"""The front object: :class:`DistilledDatamodel` composes the stages over one workspace.

Offline (``fit``): train + record trajectory -> groups -> synset (and the class-level ones for the
hierarchical datamodel). Online (``attribute``): perturb, emulate by batched fine-tuning, regress.
Each stage is cached in the workspace under a key of its configuration and inputs.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ddm import devices, distributed, presets
from ddm import models as model_registry
from ddm.attribution import agreement, online
from ddm.attribution.agreement import STEP_AGREEMENT_WARN  # noqa: F401  (read by the CLI and the benchmarks)
from ddm.attribution.matrix import AttributionMatrix
from ddm.cluster.groups import Groups, class_groups, make_groups
from ddm.config import RunConfig, fingerprint, keyed
from ddm.data.dataset import Split
from ddm.distill import stage as synset_stage
from ddm.distill.matchers import Matching
from ddm.distill.scope import head_name
from ddm.distill.stage import GRADIENTS_FILE, RETRIED_WARNING  # noqa: F401  (importable from here as before)
from ddm.distill.synset import Synset
from ddm.emulate.emulators import resolve
from ddm.exceptions import ConfigError, DataError, MissingArtifactError
from ddm.models.checks import (
    check_last_snapshot,
    check_model_output,
    load_params,
    warn_model_mismatch,
    warn_small_norm_maps,
)
from ddm.objectives.base import Objective
from ddm.task import Task, TemperedCrossEntropy
from ddm.task import resolve as resolve_task
from ddm.train.loop import train_model
from ddm.train.trajectory import Trajectory, decoupled, model_buffers, recorded_weight_decay
from ddm.workspace import Workspace, load_json, load_tensors, save_json, save_tensors

log = logging.getLogger(__name__)

#: the longest default name of an unlearned model's folder spelt out id by id (``unlearn_folder``)
UNLEARNED_NAME_MAX = 80



@dataclass
class Fitted:
    """The offline artifacts every online stage needs, all present."""

    model: nn.Module
    trajectory: Trajectory
    groups: Groups
    synset: Synset


def _restores_mode(method: Any, stagewise: bool = False) -> Any:
    """Run a public method with the model in eval mode (training sets train mode itself) and on the configured
    device, and give the model back in the mode and on the device the caller left it: results never depend on the
    mode (dropout, batch statistics), and what is stored is on the CPU. Under torchrun rank 0 runs the method
    first and the others then read its cached stages; ``stagewise`` methods (fit) coordinate stage by stage
    instead, so that every rank can share the distillation."""

    @functools.wraps(method)
    def wrapper(self: DistilledDatamodel, *args: Any, **kwargs: Any) -> Any:
        given = args[0] if args and isinstance(args[0], nn.Module) else kwargs.get("model")
        models = [m for m in (self.model, given) if isinstance(m, nn.Module)]
        modes = [(m, m.training) for m in models]
        device = self.device()
        home = devices.of(models[0]) if models else torch.device("cpu")
        try:
            with contextlib.ExitStack() as placed:
                for m in models:
                    m.eval()
                    placed.enter_context(devices.placed(m, device))  # and back where the caller had it
                # under torchrun rank 0 computes and stores, the other ranks then read the cached stages
                with contextlib.nullcontext() if stagewise else distributed.rank0_first():
                    out = method(self, *args, **kwargs)
            if isinstance(out, nn.Module) and out is not self.model:
                out.to(home)  # an unlearned model comes back where the caller keeps the target
            return out
        finally:
            for m, was in modes:
                m.train(was)

    return wrapper


def _fits(method: Any) -> Any:
    return _writes(_restores_mode(method, stagewise=True))


def _writes(method: Any) -> Any:
    """Run a method that computes, discards or replaces stages under the workspace's writer lock
    (:meth:`Workspace.lock`): a second process on the same workspace waits instead of deleting a stage folder this one
    is writing. Under torchrun only rank 0 takes it (the other ranks follow rank 0's barriers)."""

    @functools.wraps(method)
    def wrapper(self: DistilledDatamodel, *args: Any, **kwargs: Any) -> Any:
        held = self.ws.lock(method.__name__) if distributed.is_main() else contextlib.nullcontext()
        with held:
            return method(self, *args, **kwargs)

    return wrapper


class DistilledDatamodel:
    """Distilled Datamodel over a workspace folder. Constructing it reads and writes nothing."""

    def __init__(self, workspace: str | os.PathLike[str] | Workspace, config: RunConfig | None = None,
                 overwrite: bool = False, task: Task | None = None) -> None:
        """``task``: the training loss (:mod:`ddm.task`; default cross-entropy): what training minimises and
        what the head recipe differentiates. A custom task needs the head recipe (the default)."""
        self.ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace, overwrite)
        self.task = resolve_task(task)
        self.config = config or presets.demo()  # the CLI's default preset; RunConfig() is the paper's schedule
        self.model: nn.Module | None = None
        self.trajectory: Trajectory | None = None
        self.groups: Groups | None = None
        self.class_groups: Groups | None = None
        self.synset: Synset | None = None
        self.class_synset: Synset | None = None
        self._warned_gradients = False  # step_gradients said once that the groups' gradients are too large to store
        # the groups' stored gradients by synset stage, with the stage key they were read for (emulate.gradients)
        self._gradients: dict[str, tuple[str | None, dict[str, torch.Tensor]]] = {}
        self._synset_folders: dict[str, str] = {}  # a synset stage held in another folder (distill_variant's)
        self.num_classes: int | None = None
        self.keys: dict[str, str] = {}
        self.timings: dict[str, float] = {}
        self._decay_warned = False  # a handed-in trajectory's weight decay is warned about once (weight_decay)
        # Emulation compute time of the current attribute() call, as first measured: a cached emulation
        # counts the seconds it took when it was computed, so reported online cost survives reruns.
        self._emulations: dict[str, float] = {}
        self._emulation_fresh = 0.0
        self._reused: list[str] = []  # what the current attribute() call took from the caches
        self.last_unlearning_check: dict[str, Any] | None = None  # health.unlearning_check of the last unlearn()
        self.last_classes_without_data: list[int] = []  # classes the last unlearn() left without any group
        # the last unlearn()'s first step where the unlearning check redid it with more damping (else None), so that a
        # verification against exact retraining can say which of the two retraining follows
        self.last_unlearned_first: nn.Module | None = None
        self.last_rewind: dict[str, Any] | None = None  # how far the last unlearn() moved back along the trajectory
        # where the last unlearn() did not move back because the training's learning rate was annealed: the schedule
        # and the share of the training samples removed (a retrain takes that share fewer steps all the same)
        self.last_rewind_skipped: dict[str, Any] | None = None
        self.last_exact: dict[str, Any] | None = None  # the last unlearn_exact()'s retrain: seconds, folder
        self.last_relabel: dict[str, Any] | None = None  # what the last unlearn_relabel() did

    @property
    def _custom_task(self) -> Task | None:
        """The task where stages take one (None for cross-entropy: their closed forms and unchanged keys)."""
        return None if self.task.is_default else self.task

    def _head_task(self, head_loss: str | None = None, temperature: float | None = None) -> Task | None:
        """The loss the synsets carry (``head_loss``, default ``distill.head_loss``): the training task, or None for
        cross-entropy (at ``temperature``, default ``distill.head_temperature``: a tempered one where not 1)."""
        if (head_loss or self.config.distill.head_loss) != "cross-entropy" and self._custom_task is not None:
            return self._custom_task
        t = self.config.distill.head_temperature if temperature is None else temperature
        return None if t == 1 else TemperedCrossEntropy(t)

    # ---- offline ------------------------------------------------------------------------------
    STAGES = ("train", "groups", "synset")

    @_fits
    def fit(self, model: nn.Module | None, train: Split, trajectory: Trajectory | None = None,
            num_classes: int | None = None, until: str = "synset") -> DistilledDatamodel:
        """Run (or reuse) the offline stages: train + trajectory, groups, synset(s).

        ``until``: stop after ``train``, ``groups`` or ``synset`` (the default: everything).

        ``model`` is trained in place unless ``trajectory`` (from your own loop) is given; then its
        final checkpoint is loaded into ``model``. ``num_classes`` defaults to the model's spec or
        to ``max(label) + 1``.
        """
        if model is None:
            raise ConfigError("fit() needs the model (e.g. ddm.models.build('convnet', data))")
        if not isinstance(model, nn.Module):
            raise ConfigError(f"fit() takes the model as a torch.nn.Module, got {type(model).__name__}")
        if not isinstance(train, Split):
            raise ConfigError(f"fit() takes the training split (a ddm.data.Split, e.g. data.train), got "
                              f"{type(train).__name__}: for arrays use ddm.data.from_arrays(X, y).train, for a torch "
                              "Dataset ddm.data.from_torch(dataset).train")
        self.num_classes = num_classes or model_registry.spec_of(model).get("num_classes") or int(train.y.max()) + 1
        warn_model_mismatch(model, self.config)
        warn_small_norm_maps(model)
        check_model_output(model, train, self.num_classes)
        if until not in self.STAGES:
            raise ConfigError(f"until={until!r}; choose one of {', '.join(self.STAGES)}")
        self._fit_stages(model, train, trajectory, until)
        # written only once every stage asked for agrees with it: a rejected run leaves the workspace as it was
        # (the device is this session's, not the results': a workspace made on a GPU opens anywhere)
        path = self.ws.path("config.json")
        stored = self.config.with_overrides(["device=auto"]).to_dict()
        if distributed.is_main() and (not path.exists() or load_json(path) != json.loads(json.dumps(stored))):
            save_json(path, stored)
        return self

    @_fits
    def fit_classes(self, train: Split) -> DistilledDatamodel:
        """Build (or reuse) the class-level groups and synset on a fitted or loaded datamodel: what
        hierarchical attribution and class unlearning need (``hierarchical=true`` builds them in ``fit``)."""
        if self.model is None:
            raise MissingArtifactError("fit_classes() needs a fitted or loaded datamodel: call fit() or load() first")
        self.config = self.config.with_overrides(["hierarchical=true"])
        return self.fit(self.model, train, trajectory=self.trajectory if self.handed_in() else None,
                        num_classes=self.num_classes)

    @_writes
    def fit_class_groups(self, train: Split) -> Groups:
        """The class-level split (one group per class), stored as the workspace's ``groups-class`` stage, without the
        class-level synset :meth:`fit_classes` distils: what unlearning whole classes by relabelled fine-tuning or
        by retraining needs (:meth:`unlearn_relabel`, :meth:`unlearn_exact` with ``synset="classes"``)."""
        if self.model is None:
            raise MissingArtifactError("fit_class_groups() needs a fitted or loaded datamodel: call fit() or load() "
                                       "first")
        if self.class_groups is None or "groups-class" not in self.keys:
            self.class_groups = self._groups("groups-class", train, lambda: class_groups(train))
        return self.class_groups

    def _fit_stages(self, model: nn.Module, train: Split, trajectory: Trajectory | None, until: str) -> None:
        with distributed.rank0_first():  # under torchrun: rank 0 trains, the others then read its stage
            self._train(model, train, trajectory)
        model.eval()  # every later stage reads the trained model deterministically
        if until == "train":
            return
        num_classes = int(self.num_classes or 0)
        with distributed.rank0_first():
            self.groups = self._groups("groups", train, lambda: make_groups(train, self.config.cluster, num_classes))
            if self.config.hierarchical:
                self.class_groups = self._groups("groups-class", train, lambda: class_groups(train))
        if until == "groups":
            return
        self.synset = self._distill("synset", train, self.groups)
        if self.class_groups is not None:
            self.class_synset = self._distill("synset-class", train, self.class_groups)

    def _train(self, model: nn.Module, train: Split, trajectory: Trajectory | None) -> None:
        spec = model_registry.spec_of(model)
        data_fp = train.fingerprint()
        if trajectory is not None:
            check_last_snapshot(model, trajectory)
            key = fingerprint("external", spec, data_fp, float(sum(v.sum() for v in trajectory.final.values())))
            cfg: Any = {"external_trajectory": True, "model": spec}
        else:
            cfg = {"model": spec, "train": keyed(self.config.train)}
            if not self.task.is_default:  # default keys stay as they were
                cfg["task"] = self.task.name
            key = fingerprint(cfg, data_fp)
        self.keys["train"] = key
        folder = self.ws.path("train")
        names = [n for n, _ in model.named_parameters()]
        if self.ws.is_done("train", key, cfg):
            log.info("train: reusing %s", folder)
            self.trajectory = Trajectory.load(folder / "trajectory").ordered(names)
        else:
            self.ws.begin("train", key, cfg)
            t0 = time.perf_counter()
            if trajectory is None:
                trajectory = train_model(model, train, self.config.train, folder / "trajectory",
                                         task=self._custom_task)
            else:
                trajectory.save(folder / "trajectory")
            self.trajectory = trajectory.ordered(names)
            # theta_tau with the model's buffers (a batch norm's running statistics), which a trajectory of
            # parameters does not hold: reopening the workspace restores them from here
            save_tensors(folder / "model.safetensors", {**trajectory.final, **model_buffers(model)})
            save_json(folder / "model.json", spec)
            seconds = trajectory.seconds if trajectory.seconds is not None else time.perf_counter() - t0
            # the CPU thread count ddm's loop trained with: exact retrains use it to reproduce the target bit for
            # bit (devices.threads); a trajectory handed in from another loop records none
            ran = {} if cfg.get("external_trajectory") else {"threads": torch.get_num_threads(),
                                                             "device": str(devices.of(model))}
            self.ws.finish("train", key, cfg, seconds=seconds, data_fingerprint=data_fp,
                           num_classes=self.num_classes, task=self.task.name, **ran)
        load_params(model, self.trajectory.final, folder / "model.safetensors")
        self.model = model
        self.timings["train"] = self.ws.require("train").get("seconds", 0.0)

    def _groups(self, stage: str, train: Split, make: Any) -> Groups:
        cfg = keyed(self.config.cluster) if stage == "groups" else {"method": "class"}
        key = fingerprint(cfg, train.fingerprint())
        self.keys[stage] = key
        path = self.ws.path(stage, "groups.safetensors")
        if self.ws.is_done(stage, key, cfg):
            return Groups.from_tensors(load_tensors(path), cfg["method"])
        self.ws.begin(stage, key, cfg)
        t0 = time.perf_counter()
        groups: Groups = make()
        save_tensors(path, groups.to_tensors())
        self.ws.finish(stage, key, cfg, seconds=time.perf_counter() - t0, num_groups=groups.num_groups,
                       min_size=int(groups.sizes().min()), max_size=int(groups.sizes().max()))
        return groups

    def _distill(self, stage: str, train: Split, groups: Groups) -> Synset:
        """The synset stage. Under torchrun the head matcher shares its groups among the ranks (rank 0 stores the
        result, the others then read it); the other matchers run on rank 0 while the others wait."""
        if self.config.distill.matching == "head" and distributed.rank_world()[1] > 1:
            return self._distill_stage(stage, train, groups, shared=True)
        with distributed.rank0_first():
            return self._distill_stage(stage, train, groups)

    def _distill_stage(self, stage: str, train: Split, groups: Groups, shared: bool = False) -> Synset:
        """:func:`ddm.distill.stage.distill_stage`."""
        return synset_stage.distill_stage(self, stage, train, groups, shared)

    def _store_group_gradients(self, stage: str, key: str, syn: Synset, train: Split, groups: Groups,
                               statistics: dict[int, Any] | None = None) -> None:
        """:func:`ddm.distill.stage.store_group_gradients`."""
        synset_stage.store_group_gradients(self, stage, key, syn, train, groups, statistics)

    @_writes
    def store_group_gradients(self, train: Split) -> DistilledDatamodel:
        """Store the groups' own last-layer gradients beside each finished head-matched synset of a loaded workspace
        where they are missing or stale (workspaces distilled before the synset stage stored them): what
        ``emulate.gradients=groups`` reads. One pass over ``train`` per checkpoint averaged over; no distillation."""
        for stage, syn, groups in (("synset", self.synset, self.groups),
                                   ("synset-class", self.class_synset, self.class_groups)):
            if syn is not None and groups is not None and stage in self.keys:
                self._store_group_gradients(stage, self.keys[stage], syn, train, groups)
        return self

    def _group_gradients(self, stage: str) -> dict[str, torch.Tensor]:
        """The groups' stored gradients for the synset of ``stage`` (:func:`ddm.distill.stage.group_gradients`)."""
        return synset_stage.group_gradients(self, stage)

    def step_gradients(self, synset: Synset | None = None) -> str | None:
        """Whose last-layer gradients the attribution's Newton step reads: ``emulate.gradients`` (``groups`` or
        ``synsets``), or None where there is no such step (the fine-tuning emulations, block-matched synsets, whose
        step spans the last block too). ``synset``: the workspace's by default."""
        synset = synset or self.synset
        if synset is None or synset.block or self.emulation_method(synset) != "newton":
            return None
        if self.config.emulate.gradients == "groups" and self.model is not None:
            size = synset_stage.gradients_bytes(synset, self.model)
            if size > synset_stage.GRADIENTS_MAX_BYTES:  # never stored (store_group_gradients): the synsets' own
                if not self._warned_gradients:
                    log.warning("the groups' own last-layer gradients would take %.1f GiB (above %.1f GiB), so they "
                                "are not stored and the attribution's step reads the synsets' gradients "
                                "(emulate.gradients=synsets, the default before 0.20; fewer groups or a narrower "
                                "last layer bring the groups' back)", size / 2 ** 30,
                                synset_stage.GRADIENTS_MAX_BYTES / 2 ** 30)
                    self._warned_gradients = True
                return "synsets"
        return self.config.emulate.gradients

    def _attribution_synset(self, synset: Synset, tag: str) -> Synset:
        """The synset the attribution's emulation reads: with ``emulate.gradients=groups``, carrying the groups' own
        gradients and every checkpoint (their steps transfer exactly); else without the checkpoints its steps do not
        transfer to (``emulate.min_transfer``); damped by ``emulate.damping_scale`` either way."""
        e = self.config.emulate
        if self.step_gradients(synset) != "groups":
            return synset.transferring(e.min_transfer).damped(e.damping_scale)
        stage = "synset-class" if tag == "classes" else "synset"
        return replace(synset, group_gradients=self._group_gradients(stage)).damped(e.damping_scale)

    def _auto_temperature(self, syn: Synset, matching: Matching, train: Split, groups: Groups,
                          folder: Path) -> tuple[Synset, Matching, dict[str, Any]]:
        """:func:`ddm.attribution.agreement.auto_temperature` (``distill.auto_temperature``)."""
        return agreement.auto_temperature(self, syn, matching, train, groups, folder)

    def _followed_temperature(self) -> float | None:
        """The temperature the class-level synset is matched at where the group synsets in use switched to one on
        their own (``distill.auto_temperature``): the step agreement is the model's, so the class-level step at
        theta_tau would rank removals as the groups' plain one did. None where they did not switch, and where the
        synsets' loss is configured (a temperature or a custom loss is kept as set)."""
        if self.config.distill.matching != "head" or self._head_task() is not None or self.synset is None:
            return None
        return None if self.synset_temperature == 1 else self.synset_temperature

    @property
    def class_balance(self) -> tuple[float, str]:
        """``(scale, setting)``: the class balance group attributions of per-target objectives use by default, and the
        setting it comes from: ``emulate.switched_class_scale`` where the synsets' other classes' weights disagree
        between the step at theta_tau and the earlier checkpoints' steps (:attr:`other_class_agreement` below
        ``emulate.switched_class_agreement``), or, where that was not recorded, where the group synsets switched to a
        temperature on their own (:meth:`_followed_temperature`; BENCHMARKS.md, "The class balance follows the
        switch"; :func:`switched_balance_applies`); else ``emulate.other_class_scale``; on a task with two classes
        ``emulate.binary_class_scale`` in place of both (:func:`balance_rule`)."""
        classes = self.num_classes or (self.synset.num_classes if self.synset is not None else None)
        return balance_rule(self.config.emulate, classes, self.other_class_agreement,
                            self._followed_temperature() is not None)

    @property
    def other_class_agreement(self) -> float | None:
        """The other-class step agreement of the synsets in use (:meth:`_agreements`; recorded by the synset stage),
        which decides the class balance with ``emulate.switched_class_agreement``; None where the stage did not
        record it (stages made before it was, groups that mix classes, synsets other than head-matched ones)."""
        info = self.ws.stage_info("synset") if self.synset is not None else None
        value = None if info is None else info.get("other_class_agreement")
        return None if value is None else float(value)

    @property
    def match_metric(self) -> str:
        """The head matching's norm (``distill.match_metric``, resolved: ``both`` by default where the task has two
        classes, ``step`` otherwise); ``step`` for the other matchers, which do not read it."""
        if self.config.distill.matching != "head" or self.num_classes is None:
            return "step"
        from ddm.distill.head import match_metric

        return match_metric(self.config.distill, self.num_classes)

    @property
    def synset_temperature(self) -> float:
        """The temperature of the cross-entropy the synsets in use carry (1 also for a custom training loss):
        ``distill.head_temperature``, or ``distill.auto_temperature`` where the synset stage switched to it."""
        task = getattr(self.synset, "task", None)
        return task.temperature if isinstance(task, TemperedCrossEntropy) else 1.0

    def load(self, model: nn.Module | None = None) -> DistilledDatamodel:
        """Load finished offline stages from the workspace (``model``: needed for non-registry models)."""
        info = self.ws.require("train")
        stored_task = info.get("task", "cross-entropy")
        if stored_task != self.task.name:
            raise ConfigError(f"this workspace was trained with the task {stored_task!r}: pass that task "
                              f"(DistilledDatamodel(ws, task=...)), not {self.task.name!r}")
        session_device = self.config.device  # where this session computes, whatever the workspace was made on
        self.config = RunConfig.from_dict(load_json(self.ws.path("config.json"))).with_overrides(
            [f"device={session_device}"])
        self.keys["train"] = info["key"]
        self.num_classes = info.get("num_classes")
        trajectory = Trajectory.load(self.ws.path("train", "trajectory"))
        spec = load_json(self.ws.path("train", "model.json"))
        if model is None:
            if "config" not in spec and "import" not in spec:
                raise MissingArtifactError("this workspace holds a user-defined model: pass it to load(model=...) "
                                           "(or, from the command line, build the workspace with --model "
                                           "MODULE:FACTORY so it can be rebuilt)")
            model = model_registry.from_spec(spec)
        elif "head" in spec:  # the Linear its logits come from, found when it was fitted
            model.ddm_head = spec["head"]  # type: ignore[assignment]
        self.trajectory = trajectory.ordered([n for n, _ in model.named_parameters()])
        load_params(model, self.trajectory.final, self.ws.path("train", "model.safetensors"))
        model.eval()  # as after fit(): every stage reads the trained model deterministically
        self.model = model
        for stage, attr, method in (("groups", "groups", None), ("groups-class", "class_groups", "class")):
            st = self.ws.stage_info(stage)
            if st and st.get("complete"):
                self.keys[stage] = st["key"]
                setattr(self, attr, Groups.from_tensors(load_tensors(self.ws.path(stage, "groups.safetensors")),
                                                        method or st["config"]["method"]))
        for stage, attr in (("synset", "synset"), ("synset-class", "class_synset")):
            st = self.ws.stage_info(stage)
            if st and st.get("complete"):
                self.keys[stage] = st["key"]
                syn = Synset.from_tensors(load_tensors(self.ws.path(stage, "synset.safetensors")),
                                          int(self.num_classes or 0))
                # the loss it was matched with, as stored (synsets stored before the option carry the task's)
                syn.task = self._head_task(st.get("config", {}).get("head_loss", "task"),
                                           st.get("temperature", st.get("config", {}).get("head_temperature", 1.0)))
                setattr(self, attr, syn)
        return self

    def calibrate(self, data: Any, retrain: Any = None) -> dict[str, Any]:
        """Score this workspace against exact retraining on test targets and group subsets of its own (``ddm check``'s
        32 retrains, cached under ``check/``) and keep what the check advises (damping, class balance, schedule term,
        tempered synsets) as its settings: what ``ddm run --calibrate`` does (README, "`ddm run` calibrates where it
        is cheap"). ``data``: the dataset it was fitted on (``.train``, ``.test``); ``retrain``: the training loop of a
        trajectory handed in (``fn(model, train[, seed])``). Returns what was kept (``kept``) and DDM's LDS on the
        calibration's targets before and with it (``lds_before``, ``lds_after``); written to ``check/calibration.json``.
        A later ``ddm check`` scores the result on targets and subsets the calibration did not choose on."""
        from ddm.evaluation.check import calibrate_and_keep

        return calibrate_and_keep(self, data, retrain)

    def keep_settings(self, overrides: list[str]) -> None:
        """Make ``emulate.FIELD=VALUE`` ``overrides`` this workspace's own: applied to this datamodel and written into
        its ``config.json``, so every later ``load()`` (``ddm attribute``, ``diagnose``, ``report``, ``unlearn``) uses
        them. Only emulation settings: they change no stored stage (``ddm run --set`` changes the others)."""
        bad = [o for o in overrides if not o.strip().startswith("emulate.")]
        if bad:
            raise ConfigError(f"only emulate.* settings can be kept without rerunning a stage (got {bad})")
        path = self.ws.path("config.json")
        if not path.exists():
            raise MissingArtifactError(f"{path} does not exist: finish the run (ddm run) first")
        stored = RunConfig.from_dict(load_json(path)).with_overrides(overrides)
        self.config = self.config.with_overrides(overrides)
        if distributed.is_main():
            save_json(path, stored.to_dict())

    @_writes
    def distill_variant(self, train: Split, overrides: list[str], stage: str) -> DistilledDatamodel:
        """A copy of this fitted or loaded datamodel whose synset is distilled with the ``distill.*`` ``overrides``
        into the workspace's stage ``stage`` (e.g. ``check/synset-...``; cached and resumable like the synset stage,
        keyed as the synset stage would be with them), sharing its model, trajectory and groups. The workspace's own
        synset and ``config.json`` are untouched: what ``ddm check`` scores beside the synsets in use, and what
        :meth:`adopt_variant` puts in their place."""
        bad = [o for o in overrides if not o.strip().startswith("distill.")]
        if bad:
            raise ConfigError(f"distill_variant() takes distill.* settings only (got {bad})")
        self.fitted()
        variant = copy.copy(self)
        variant.keys, variant.timings = dict(self.keys), dict(self.timings)
        variant._emulations, variant._reused = {}, []
        variant._gradients, variant._synset_folders = {}, {**self._synset_folders, "synset": stage}
        variant.config = self.config.with_overrides(overrides)
        variant.synset = variant._distill(stage, train, self.groups)  # type: ignore[arg-type]
        variant.keys["synset"] = variant.keys[stage]
        return variant

    @_writes
    def adopt_variant(self, train: Split, overrides: list[str], stage: str) -> None:
        """Make the synset of :meth:`distill_variant` (``overrides``, ``stage``) this workspace's own: its folder
        replaces the ``synset`` stage, the ``overrides`` go into ``config.json``, and a class-level synset, where the
        workspace has one, is distilled again with them (``ddm check --apply``)."""
        import shutil

        variant = self.distill_variant(train, overrides, stage)  # reused where the check distilled it
        src, dst = self.ws.path(stage), self.ws.path("synset")
        tmp = self.ws.path("synset.adopting")
        if tmp.exists():
            shutil.rmtree(tmp)
        shutil.copytree(src, tmp)
        save_json(tmp / "stage.json", {**load_json(tmp / "stage.json"), "stage": "synset"})  # its name where it lands
        old = self.ws.path("synset.replaced")
        if old.exists():
            shutil.rmtree(old)
        if dst.exists():
            dst.rename(old)
        tmp.rename(dst)
        shutil.rmtree(old, ignore_errors=True)
        self.config, self.synset = variant.config, variant.synset
        self.keys["synset"] = variant.keys[stage]
        self._gradients.pop("synset", None)
        overwrite, self.ws.overwrite = self.ws.overwrite, True  # the class-level synset, matched the old way
        try:
            self.fit(self.model, train, trajectory=self.trajectory if self.handed_in() else None,
                     num_classes=self.num_classes)
        finally:
            self.ws.overwrite = overwrite

    def fitted(self) -> Fitted:
        """The model, trajectory, groups and synset, or an error saying to fit or load first."""
        if self.model is None or self.trajectory is None or self.groups is None or self.synset is None:
            raise MissingArtifactError("no synset yet: call fit() (or load() on a finished workspace) first")
        return Fitted(self.model, self.trajectory, self.groups, self.synset)

    def device(self) -> torch.device:
        """Where the stages compute (``device``; see :mod:`ddm.devices`), or an error for a recipe that cannot."""
        dev = devices.resolve(self.config.device)
        if dev.type != "cpu" and (self.config.distill.matching not in ("head", "block")
                                  or self.config.emulate.method in ("finetune", "linear")):
            raise ConfigError(f"device={self.config.device!r}: the fine-tuning and trajectory-matching recipes run on "
                              "the CPU only; use the head recipe (the default) or --device cpu")
        return dev

    # ---- online -------------------------------------------------------------------------------
    @property
    def finetune_lr(self) -> float:
        e = self.config.emulate
        return e.finetune_lr if e.finetune_lr is not None else e.finetune_scale * self.train_lr

    @property
    def train_lr(self) -> float:
        """The learning rate the trajectory was recorded with (the unit of the fine-tune rate)."""
        assert self.trajectory is not None
        return self.trajectory.lr or self.config.train.lr

    @property
    def finetune_steps(self) -> int:
        assert self.trajectory is not None
        s = self.config.emulate.finetune_steps
        return self.trajectory.tau if s is None else s

    def emulation_method(self, synset: Synset | None = None) -> str:
        """The emulator in use: ``emulate.method``, with ``auto`` resolved by the synset's kind."""
        return resolve(self.config.emulate.method, synset or self.synset)

    def handed_in(self) -> bool:
        """Whether the workspace's trajectory was handed in (``fit(..., trajectory=)``) rather than trained here."""
        return bool((self.ws.stage_info("train") or {}).get("config", {}).get("external_trajectory"))

    def training_threads(self) -> int | None:
        """The CPU thread count the model was trained with (the train stage records it), at which exact retrains
        reproduce it bit for bit (:func:`ddm.devices.threads`); None where it is not recorded (a trajectory handed in,
        a workspace trained before the count was) or the model was trained on a GPU."""
        info = self.ws.stage_info("train") or {}
        if "threads" not in info or not str(info.get("device", "cpu")).startswith("cpu"):
            return None
        return int(info["threads"])

    @property
    def weight_decay(self) -> float:
        """The L2 weight decay training used on the model's head: the recorded optimizer's for a trajectory handed
        in (``fit(..., trajectory=)``, recorded by :class:`ddm.TrajectoryRecorder`; the decay of the parameter group
        that holds the head's weight where groups differ), else ``train.weight_decay``; 0 for a decoupled decay
        (AdamW, or Adam with ``decoupled_weight_decay=True``), which is no L2 term. The Newton damping and the
        groups' decay shares follow it; a handed-in trajectory that does not say, or says another value than a
        ``train.weight_decay`` that was set, gets a warning (once)."""
        wd = float(self.config.train.weight_decay)
        record = (self.trajectory.optimizer or {}) if self.trajectory is not None else {}
        if decoupled(record) or (not record.get("type") and self.config.train.optimizer == "adamw"):
            # decoupled decay shrinks the weights outside the gradient: no L2 term of the loss whose curvature
            # the damped Newton step could add (its stationary points are the loss's own, shifted by a pull that
            # Adam's scaling makes small), so it is left out rather than taken for an L2 term of that size
            return 0.0
        if not self.handed_in() or self.trajectory is None:
            return wd
        head = head_name(self.model) if self.model is not None else None
        recorded = recorded_weight_decay(record, None if head is None else f"{head}.weight")
        if not self._decay_warned:
            self._decay_warned = True
            if recorded is None:
                log.warning("the trajectory handed in does not record its optimizer's weight decay: ddm assumes "
                            "train.weight_decay = %g (record it with ddm.TrajectoryRecorder.attach(optimizer), or "
                            "set train.weight_decay)", wd)
            elif wd and abs(recorded - wd) > 1e-12:
                log.warning("train.weight_decay = %g, but the trajectory's optimizer recorded %g for the model's "
                            "head: ddm uses the recorded value", wd, recorded)
        return wd if recorded is None else recorded

    def decay(self, groups: Groups) -> torch.Tensor | None:
        """``[K]``: the groups' shares of the weight decay the Newton emulation and unlearning add to their
        gradients (``emulate.decay_share``; None without weight decay)."""
        from ddm.emulate.newton import decay_shares

        if not self.config.emulate.decay_share:
            return None
        return decay_shares(groups.sizes(), self.weight_decay)

    @_restores_mode
    def step_agreement(self, train: Split, num_targets: int = 50, halves: int = 40, synset: Synset | None = None,
                       groups: Groups | None = None) -> float | None:
        """How alike the Newton step at theta_tau alone and the step at the earlier checkpoints alone rank removals
        (no retrain): both are regressed as ``attribute`` does on ``num_targets`` training samples (a fixed draw), and
        their predicted losses compared over ``halves`` random halves of the groups (Spearman per target, mean).
        None without head synsets or earlier checkpoints; over every recorded checkpoint where the synsets transfer to
        none (``emulate.min_transfer``), else over those they transfer to. Below :data:`STEP_AGREEMENT_WARN` the step at
        theta_tau is not to be trusted (BENCHMARKS.md, "A lead: a retrain-free sign of a broken step"). ``synset`` and
        ``groups``: others than the datamodel's (the synset stage's own, before it is stored)."""
        return self._step_agreement(train, num_targets, halves, synset, groups)

    def _step_agreement(self, train: Split, num_targets: int = 50, halves: int = 40, synset: Synset | None = None,
                        groups: Groups | None = None) -> float | None:
        """:meth:`step_agreement` without its coordination of ranks (the synset stage calls it on every rank)."""
        both = self._agreements(train, num_targets, halves, synset, groups)
        return None if both is None else both[0]

    def _step_attributions(self, train: Split, num_targets: int = 50, synset: Synset | None = None,
                           groups: Groups | None = None) -> tuple[Split, AttributionMatrix, AttributionMatrix] | None:
        """:func:`ddm.attribution.agreement.step_attributions`."""
        return agreement.step_attributions(self, train, num_targets, synset, groups)

    def _agreements(self, train: Split, num_targets: int = 50, halves: int = 40, synset: Synset | None = None,
                    groups: Groups | None = None) -> tuple[float, float | None] | None:
        """:func:`ddm.attribution.agreement.agreements`: (step agreement, other-class agreement)."""
        return agreement.agreements(self, train, num_targets, halves, synset, groups)

    def _emulate(self, synset: Synset, synset_key: str, deleted: torch.Tensor, targets: Split,
                 tag: str, groups: Groups) -> torch.Tensor:
        """Logits ``[P, N, C]`` of the emulated models on ``targets`` (:func:`ddm.attribution.online.emulate`)."""
        return online.emulate(self, synset, synset_key, deleted, targets, tag, groups)

    def _num_perturbations(self, k: int, synset: Synset | None = None) -> int:
        """:func:`ddm.attribution.online.num_perturbations`."""
        return online.num_perturbations(self, k, synset)

    @_restores_mode
    def attribute(self, targets: Split | Any, objective: str | Objective | Any = "dist1", hierarchical: bool = False,
                  name: str | None = None, other_class_scale: float | None = None) -> AttributionMatrix:
        """Attribution matrix of ``objective`` on ``targets`` over the groups (optionally hierarchical).

        ``other_class_scale``: the class balance of per-target objectives (None: :attr:`class_balance`, i.e.
        ``emulate.other_class_scale``, or ``emulate.switched_class_scale`` where the synsets switched to a temperature;
        1: none, e.g. where the harm a group does to other classes is the question, as in :mod:`ddm.diagnosis`).

        ``targets``: a :class:`Split`, or any inputs (tensor or numpy array, or an ``(x, y)`` pair) in the
        model's input space; without labels each input is asked about the class the model predicts
        (:func:`ddm.data.targets.as_split`). Saved under ``attributions/<name>`` (default: the objective's name).
        """
        return online.attribute(self, targets, objective, hierarchical, name, other_class_scale)

    @_restores_mode
    def attribute_classes(self, targets: Split, objective: str | Objective | Any = "dist1") -> AttributionMatrix:
        """Class-level attribution (K = classes) with the class-level synset: the top of Sec. 3.3."""
        return online.attribute_classes(self, targets, objective)

    def _attribute_flat(self, targets: Split, obj: Objective, synset: Synset, synset_key: str, groups: Any,
                        tag: str, subset: torch.Tensor | None = None, scale: float | None = None) -> AttributionMatrix:
        """:func:`ddm.attribution.online.attribute_flat`: every group perturbed, or only ``subset``."""
        return online.attribute_flat(self, targets, obj, synset, synset_key, groups, tag, subset, scale)

    def flagged_groups(self) -> list[int]:
        """Groups whose synset failed a health check (``ddm info``), marked in every ranking."""
        st = self.ws.stage_info("synset") or {}
        return list((st.get("health") or {}).get("flagged", []))

    # ---- unlearning -----------------------------------------------------------------------------
    def unlearn_folder(self, groups: list[int], name: str | None = None, synset: str = "groups",
                       prefix: str = "") -> Path:
        """Where :meth:`unlearn` saves the checkpoint for these groups (``unlearned/<name>``, by default
        ``<synset>-<ids>``; :meth:`unlearn_relabel` and :meth:`unlearn_exact` with the ``prefix`` ``relabel-`` and
        ``exact-``). A default longer than :data:`UNLEARNED_NAME_MAX` characters names the first ids, how many more,
        and a digest of them all, so that two removals never share a folder."""
        default = prefix + f"{synset}-" + "-".join(map(str, groups))
        if len(default) > UNLEARNED_NAME_MAX:
            digest = hashlib.sha256(",".join(map(str, groups)).encode()).hexdigest()[:10]
            default = f"{prefix}{synset}-{'-'.join(map(str, groups[:8]))}-and-{len(groups) - 8}-more-{digest}"
        return self.ws.path("unlearned", name or default)

    def unlearned(self, name: str) -> nn.Module:
        """The model :meth:`unlearn` (or ``ddm unlearn``) saved under ``unlearned/<name>`` (e.g. ``groups-3-17``, the
        name ``ddm unlearn`` prints): a copy of the trained model with that checkpoint's weights, in eval mode."""
        if self.model is None:
            raise MissingArtifactError("no trained model: fit() or load() the workspace first")
        plain = bool(str(name)) and Path(str(name)).name == str(name) and str(name) not in (".", "..")
        folder = self.ws.path("unlearned", str(name)) if plain else None
        if folder is None or not (folder / "model.safetensors").exists():
            root = self.ws.path("unlearned")
            saved = sorted(p.name for p in root.iterdir()
                           if (p / "model.safetensors").exists()) if root.is_dir() else []
            raise MissingArtifactError(f"no unlearned model {name!r} in {root}; saved: "
                                       f"{', '.join(saved) if saved else 'none (ddm unlearn saves one)'}")
        state = load_tensors(folder / "model.safetensors")
        model = copy.deepcopy(self.model)
        own = model.state_dict()
        if set(state) != set(own) or any(state[k].shape != own[k].shape for k in own):
            raise MissingArtifactError(f"{folder / 'model.safetensors'} does not fit this workspace's model (another "
                                       "model's checkpoint, or one saved before the workspace was rebuilt): unlearn "
                                       "again")
        model.load_state_dict(state)
        return model.eval()

    def _check_targets(self, targets: Split, image_shape: tuple[int, int, int]) -> None:
        """Targets in the training data's input space, finite, with labels among the model's classes."""
        if tuple(targets.x.shape[1:]) != image_shape:
            raise DataError(f"targets have shape {tuple(targets.x.shape[1:])} per sample; the model takes "
                            f"{image_shape} (same channels and size as the training data, normalised the same way)")
        if not torch.isfinite(targets.x).all():
            bad = (~torch.isfinite(targets.x.flatten(1))).any(1).nonzero().flatten()
            raise DataError(f"{len(bad)} target(s) hold NaN or infinite values (rows {bad[:5].tolist()}); remove them")
        classes = int(self.num_classes or self.synset.num_classes)  # type: ignore[union-attr]
        if len(targets.y) and (int(targets.y.min()) < 0 or int(targets.y.max()) >= classes):
            raise DataError(f"target labels must lie in [0, {classes - 1}] (the model's classes), got "
                            f"{int(targets.y.min())}..{int(targets.y.max())}")

    @_restores_mode
    def unlearn(self, groups: list[int] | torch.Tensor, name: str | None = None, synset: str = "groups") -> nn.Module:
        """Remove ``groups`` from theta_tau and save the checkpoint: the kept data's Newton step on the last layer
        (head-matched synsets; ``emulate.unlearn_damping``), else fine-tuning on their synsets.
        ``synset='classes'`` removes whole classes with the class-level synset (:func:`ddm.unlearning.unlearn`)."""
        from ddm.unlearning import unlearn

        return unlearn(self, groups, name, synset)

    @_restores_mode
    def unlearn_relabel(self, groups: list[int] | torch.Tensor, train: Split, name: str | None = None,
                        synset: str = "groups", step_rules: bool = True,
                        training_fit: dict[str, Any] | None = None) -> nn.Module:
        """Remove ``groups`` by one epoch of the training's optimizer over ``train`` (the split the workspace was
        fitted on) with the removed samples relabelled by their nearest kept samples (soft labels where those are
        split), and save the checkpoint under
        ``unlearned/<name>`` (default ``relabel-groups-<ids>``): ``ddm unlearn``'s default. It reads the training
        data, where :meth:`unlearn` needs only the synsets, and follows a retrain where a removal takes modes of a
        class, which the synsets' step does not (BENCHMARKS.md, "Relabelled fine-tuning";
        :func:`ddm.unlearning.unlearn_relabel`). Where the model fits its training data loosely and the removal thins
        a class, or where the epoch trains a model still learning further than its training went, the synsets' step
        is taken instead (``step_rules=False`` runs the epoch there too; BENCHMARKS.md, "Unlearning on loosely fitted
        models", "The relabelled epoch replayed where the model was still learning"). ``training_fit``:
        :func:`ddm.health.fit_to_training`'s answer for this model and ``train`` where the caller already has it (it
        is computed otherwise, where a class is thinned)."""
        from ddm.unlearning import unlearn_relabel

        return unlearn_relabel(self, train, groups, name, synset, step_rules, training_fit)

    @_restores_mode
    def unlearn_exact(self, groups: list[int] | torch.Tensor, train: Split, name: str | None = None,
                      synset: str = "groups", retrain: Any = None) -> nn.Module:
        """Retrain from theta_0 on ``train`` (the split the workspace was fitted on) without ``groups``, in the
        target's data order, and save it under ``unlearned/<name>`` (default ``exact-groups-<ids>``): the exact
        answer :meth:`unlearn` approximates, at the cost of a retrain. ``retrain``: your own training loop
        (README, "Checking it against exact retraining"), needed where the trajectory was handed in
        (:func:`ddm.unlearning.unlearn_exact`)."""
        from ddm.unlearning import unlearn_exact

        return unlearn_exact(self, train, groups, name, synset, retrain)


def balance_rule(e: Any, num_classes: int | None, agreement: float | None, switched: bool) -> tuple[float, str]:
    """``(scale, setting)``: the class balance of the emulation settings ``e`` (:class:`EmulateConfig`) for a task
    with ``num_classes`` classes whose synsets have the other-class step ``agreement`` and ``switched`` to a
    temperature or not: ``emulate.binary_class_scale`` with two classes, ``emulate.switched_class_scale`` where
    :func:`switched_balance_applies`, else ``emulate.other_class_scale``."""
    if num_classes == 2 and e.binary_class_scale is not None:
        return e.binary_class_scale, "emulate.binary_class_scale"
    if e.switched_class_scale is not None and switched_balance_applies(agreement, e.switched_class_agreement,
                                                                       switched):
        return e.switched_class_scale, "emulate.switched_class_scale"
    return e.other_class_scale, "emulate.other_class_scale"


def switched_balance_applies(agreement: float | None, threshold: float | None, switched: bool) -> bool:
    """Whether group attributions take ``emulate.switched_class_scale``: where the synsets' other-class step
    agreement (recorded by the synset stage) is below ``emulate.switched_class_agreement``, switched to a temperature
    or not; where either is unknown (no threshold configured, a stage made before the agreement was recorded), where
    the synsets ``switched`` to a temperature on their own, as before the agreement was read."""
    if threshold is None or agreement is None:
        return switched
    return agreement < threshold




def online_seconds(attributions: list[AttributionMatrix]) -> float:
    """From-scratch online cost of a set of attributions made by :meth:`DistilledDatamodel.attribute`:
    each one's own work plus every distinct emulation once, at its recorded time (so reruns that reuse
    cached emulations report the same cost as the first run)."""
    emulations: dict[str, float] = {}
    overhead = 0.0
    for a in attributions:
        meta = a.meta or {}
        if "emulations" not in meta:
            raise ConfigError("online_seconds needs attributions made by DistilledDatamodel.attribute")
        emulations.update(meta["emulations"])
        overhead += float(meta["overhead_seconds"])
    return overhead + sum(emulations.values())
