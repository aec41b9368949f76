"""What several of ``ddm``'s commands share: configuration from the arguments, opening a workspace and its data, the
user's retraining function, and short text helpers for the summaries they print."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from ddm.exceptions import DDMError

log = logging.getLogger("ddm")


def parse_indices(text: str, n: int, what: str) -> list[int]:
    text = text.strip()
    try:
        if ":" in text:
            a, b = text.split(":", 1)
            idx = list(range(int(a or 0), int(b) if b else n))
        else:
            idx = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise DDMError(f"{what} {text!r}: give START:STOP or a comma list of integers") from None
    if not idx and ":" in text:
        raise DDMError(f"{what} {text!r} is an empty range: give START:STOP with START < STOP")
    if not idx:
        raise DDMError(f"{what} {text!r} names no index: give a comma list of integers (3,17) or START:STOP (0:20)")
    bad = [i for i in idx if not 0 <= i < n]
    if bad:
        raise DDMError(f"{what} {text!r}: indices must lie in [0, {n - 1}]" + (f" (bad: {bad[:5]})" if bad else ""))
    return idx


def make_config(args: argparse.Namespace) -> Any:
    from ddm import presets
    from ddm.config import RunConfig

    stored = Path(args.workspace, "config.json")
    if args.config and args.preset:
        raise DDMError("--config and --preset both name a whole configuration: give one of them "
                       "(add --set STAGE.FIELD=VALUE for changes)")
    if args.config:
        try:
            cfg = RunConfig.from_json(Path(args.config).read_text())
        except OSError as exc:
            raise DDMError(f"--config {args.config}: {exc.strerror or exc}") from None
        except json.JSONDecodeError as exc:
            raise DDMError(f"--config {args.config} is not valid JSON ({exc})") from None
    elif args.preset is None and stored.exists():
        cfg = RunConfig.from_json(stored.read_text())
    else:
        cfg = presets.get(args.preset or "demo")
    sets = presets.recipe(args.recipe) if getattr(args, "recipe", None) else []
    if args.dataset:
        sets.append(f"data.name={args.dataset}")
    if args.data_dir:
        sets.append(f"data.data_dir={args.data_dir}")
    if getattr(args, "device", None):
        sets.append(f"device={args.device}")
    cfg = cfg.with_overrides(sets + list(args.sets))  # --set applies last
    if cfg.data.name == "npz" and cfg.data.data_dir and not Path(cfg.data.data_dir).is_absolute():
        # the workspace keeps the file's full path, so that later commands find it from any directory
        cfg = cfg.with_overrides([f"data.data_dir={Path(cfg.data.data_dir).resolve()}"])
    from ddm import devices

    devices.resolve(cfg.device)  # a device this machine lacks is an error now, not after the data is loaded
    return cfg


def model_for_data(cfg: Any, data: Any, args: argparse.Namespace) -> Any:
    """``cfg`` with an MLP in place of the preset's ConvNet where ``data`` are feature vectors (1x1 "images", which
    the ConvNet's instance norm refuses), and with fewer ConvNet blocks where the images are too small for the
    preset's depth (:func:`ddm.presets.model_for`), unless the model was named (``--set model.name=...`` or
    ``--model``) or, for the depth, ``--set model.depth=...`` asks for one: ``--set model.name=convnet`` alone names
    no depth, and gets the one for its images. A configuration read back from the workspace (``ddm run -w WS`` with
    no ``--preset`` or ``--config``) is what was run, and is kept as it is."""
    from ddm import presets

    model_cfg = presets.model_for(data, cfg.model)
    named = {s.split("=", 1)[0].strip() for s in args.sets}
    stored = (getattr(args, "preset", None) is None and not getattr(args, "config", None)
              and Path(args.workspace, "config.json").exists())
    if model_cfg == cfg.model or getattr(args, "model", None) or stored:
        return cfg
    if model_cfg.name != cfg.model.name:
        if "model.name" in named:
            return cfg
        log.info("the data are feature vectors (%d per sample): an MLP (model.name=mlp, width %d, depth %d) in place "
                 "of the preset's ConvNet", data.image_shape[0], model_cfg.width, model_cfg.depth)
    elif "model.depth" in named:
        return cfg
    else:
        log.info("%s images: a ConvNet of depth %d in place of the preset's %d, so that its last instance norm sees "
                 "maps of at least 4x4 (--set model.depth=%d keeps the preset's)",
                 "x".join(map(str, data.image_shape[1:])), model_cfg.depth, cfg.model.depth, cfg.model.depth)
    return cfg.with_overrides([f"model.name={model_cfg.name}", f"model.depth={model_cfg.depth}"])


#: the workspace's folder of the rows scikit-learn chose for its data's subsets (``ddm.data.rows_cache``)
CACHE_FOLDER = "cache"


def load_data(cfg: Any, workspace: str) -> Any:
    """The workspace's dataset, or an error that says how to open a workspace fitted on data from Python. The rows of
    its subsets are kept in the workspace's ``cache/`` (``ddm.data.rows_cache``)."""
    from ddm import data as data_mod

    if cfg.name not in data_mod.DATASETS:
        raise DDMError(f"{workspace} was fitted on data handed in from Python ({cfg.name!r}: ddm.data.from_arrays or "
                       "from_torch), which the command line cannot load (it knows "
                       f"{', '.join(data_mod.DATASETS.names())}): open it from Python with the same data, "
                       "`dm = ddm.DistilledDatamodel(WS).load()`, then dm.attribute(data.test[...]), dm.unlearn(...), "
                       "ddm.evaluation.check.check(dm, data) (README, 'Python quickstart'); `ddm info` reads it as is")
    with data_mod.rows_cache(Path(workspace) / CACHE_FOLDER):
        return data_mod.load(cfg)


def load_workspace(args: argparse.Namespace, overrides: list[str] | None = None) -> tuple[Any, Any]:
    """The workspace's datamodel (with this session's ``overrides`` of its settings) and its data."""
    from ddm.pipeline import DistilledDatamodel

    if getattr(args, "model", None):
        from ddm import models
        from ddm.config import RunConfig

        stored = Path(args.workspace, "config.json")
        if not stored.exists():
            raise DDMError(f"{args.workspace} holds no finished run (no config.json): run `ddm run` first")
        data = load_data(RunConfig.from_json(stored.read_text()).data, args.workspace)
        model = models.from_import(args.model, data.num_classes, data.image_shape)
        dm = DistilledDatamodel(args.workspace, session_config(args)).load(model=model)
    else:
        dm = DistilledDatamodel(args.workspace, session_config(args)).load()
        data = load_data(dm.config.data, args.workspace)
    if overrides:
        dm.config = dm.config.with_overrides(overrides)
    if dm.step_gradients() == "groups":  # a workspace distilled before the synset stage stored them, or asked to
        dm.store_group_gradients(data.train)
    return dm, data


def user_retrainer(args: argparse.Namespace) -> Any:
    """The user's training loop for exact retrains (``--retrain MODULE:FUNCTION``), or None for ddm's own."""
    if not getattr(args, "retrain", None):
        return None
    from ddm.evaluation.retrain import Retrainer

    return Retrainer.from_import(args.retrain)


def session_config(args: argparse.Namespace) -> Any:
    """The configuration a command opens a workspace with: only the device is this session's (``--device``)."""
    from ddm import devices
    from ddm.config import RunConfig

    cfg = RunConfig().with_overrides([f"device={getattr(args, 'device', None) or 'auto'}"])
    devices.resolve(cfg.device)
    return cfg


def ensure_classes(dm: Any, data: Any) -> None:
    """Build the class-level synset on first use (hierarchical attribution, class unlearning)."""
    if dm.class_synset is None:
        print("building the class-level synset (first hierarchical use; reused afterwards) ...", file=sys.stderr)
        dm.fit_classes(data.train)


def listed(ids: list[Any], limit: int = 20, where: str = " (`ddm info --json` lists them all)") -> str:
    """``ids`` for a terminal: all of them up to ``limit``, else the first ``limit``, how many more and ``where`` the
    whole list is."""
    if len(ids) <= limit:
        return str(list(ids))
    return f"{list(ids[:limit])} and {len(ids) - limit:,} more{where}"


def off_scale_line(health: dict[str, Any]) -> str:
    """The synset health report's images off the data's scale, for ``ddm run`` and ``ddm info``: the text the health
    log and the emulation's non-finite error give (:func:`ddm.health.off_scale_note`)."""
    from ddm.health import off_scale_note

    return off_scale_note(len(health["off_scale"]), health["image_scale_max"])


def grown(grown: dict[str, Any]) -> str:
    """What the synset stage's ``grown`` record (``distill.ipc_grow``) says, for ``ddm run`` and ``ddm info``."""
    return (f"images per group: {grown['kept']} (the matching with {grown['from']} stopped at mean relative error "
            f"{grown['errors'][0]:.2g} above distill.tolerance; with {grown['to']}: {grown['errors'][1]:.2g}; "
            "distill.ipc_grow)")


def mostly_removed(groups: Any, idx: list[int], whole: bool = False) -> list[dict[str, int]]:
    """The classes that ``idx`` (group indices) take half or more of the training samples from but not all (with
    ``whole``: or all): where exact retraining's accuracy on the class can fall far and the last-layer unlearning
    does not follow, and where groups' removals no longer add up as the per-group scores assume."""
    total, kept = groups.class_sizes(idx)
    return [{"class": c, "kept": int(kept[c]), "of": int(total[c])} for c in range(len(total))
            if total[c] > 0 and (whole or 0 < kept[c]) and 2 * kept[c] <= total[c]]


def averaged_line(checkpoints: list[dict[str, Any]], gradients: str | None, min_transfer: float) -> str:
    """Which recorded checkpoints the attribution's step averages over (:func:`ddm.health.averaged_checkpoints`),
    with the synsets' step cosine at each, for ``ddm run`` and ``ddm info``."""
    from ddm.health import averaged_checkpoints

    used, left_out = averaged_checkpoints(checkpoints, gradients, min_transfer)

    def listed(cs: list[dict[str, Any]]) -> str:
        return ", ".join(f"{c['epoch']:g} (synsets' step cosine {c['cosine_mean']:.2f})" for c in cs)

    line = (f"attribution averaged with theta_tau and the checkpoints at epochs {listed(used)}" if used
            else "attribution at theta_tau only")
    if gradients == "groups":
        line += ": the step reads the groups' own gradients there (emulate.gradients=groups)"
    if left_out:
        line += (f"; left out, the synsets' steps do not transfer there (below emulate.min_transfer "
                 f"{min_transfer:g}): epochs {listed(left_out)}")
    return line


def class_text(row: dict[str, Any]) -> str:
    """``class   3``, or for a group that mixes classes ``mixed(10) 3`` (how many, and the most frequent)."""
    n = row.get("classes", 1)
    return f"class {row['label']:>3}" if n <= 1 else f"mixed({n}) {row['label']}"


def training_fit(dm: Any, data: Any) -> dict[str, Any] | None:
    """How closely the workspace's model fits its training data (``ddm.health.fit_to_training`` at theta_tau), for a
    classification by cross-entropy; None for another task (``ddm run``/``info`` report it; ``ddm unlearn`` warns on
    a loose fit)."""
    if not dm.task.is_default:
        return None
    from ddm.health import fit_to_training

    return fit_to_training(dm.model, dm.trajectory.final, data.train, int(getattr(data, "num_classes", 0) or 0))


#: a target model whose test accuracy is below chance + this share of the way from chance to 100% is warned about
NEAR_CHANCE = 0.1


def near_chance(acc: float, num_classes: int) -> str | None:
    """A warning when a classifier's test accuracy ``acc`` is barely above chance (1 / ``num_classes``): every
    attribution and unlearning of such a model describes one that has not learned its task."""
    if num_classes < 2:
        return None
    chance = 1.0 / num_classes
    if acc >= chance + NEAR_CHANCE * (1 - chance):
        return None
    return (f"the target model's test accuracy {100 * acc:.1f}% is at or near chance ({100 * chance:.1f}% for "
            f"{num_classes} classes): it has not learned its task, so its attributions and unlearning say little "
            "about the data; train it longer or at another rate (train.epochs, train.lr) and run again with "
            "--overwrite")
