"""Models trained in a user's own loop, handed in and checked with that loop (a probe; no default is chosen here).

Each configuration trains a network in a plain PyTorch loop that ddm's ``train.*`` settings cannot express (a
torch learning-rate scheduler, Nesterov momentum, a loader's shuffling, label smoothing, a hand-built network,
random translations or horizontal flips of the images, batch norm and dropout),
records it with :class:`ddm.TrajectoryRecorder` at every epoch, hands the trajectory to ``fit`` and runs ``ddm
check`` with ``retrain=`` the same loop (README, "Your own training loop"): 16 random halves, 15 other-class
subsets and the full data, retrained in the user's loop; DDM beside the trivial same-class score, last-layer
influence and TracIn on the same retrains, 200 targets; the check's advice and its reproduction of the target.

    python benchmarks/own_loop.py --seeds 0,1,2 --out benchmarks/results/own-loop
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import ddm
from ddm.evaluation.check import check
from ddm.evaluation.retrain import Retrainer
from ddm.workspace import atomic_write_text


@dataclass(frozen=True)
class Loop:
    """A user's training loop: ``optimizer(params)``, ``scheduler(opt)`` stepped once per epoch, ``loss``."""

    epochs: int
    batch_size: int
    optimizer: Callable[[Any], torch.optim.Optimizer]
    scheduler: Callable[[torch.optim.Optimizer], Any]
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    shift: int = 0  # data augmentation: random translations by up to this many pixels, seeded with the data order
    flip: bool = False  # data augmentation: each image flipped left-right with probability 1/2, seeded likewise
    param_groups: Callable[[nn.Module], Any] | None = None  # the optimizer's parameter groups, else all parameters
    per_step: bool = False  # the scheduler stepped after every optimizer step (OneCycleLR), else once per epoch

    def run(self, model: nn.Module, train: Any, seed: int | None,
            recorder: ddm.TrajectoryRecorder | None = None) -> nn.Module:
        opt = self.optimizer(self.param_groups(model) if self.param_groups else model.parameters())
        sched = self.scheduler(opt)
        if recorder is not None:
            recorder.attach(opt)
            recorder.record(0)
        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(train.x, train.y),
                                             batch_size=self.batch_size, shuffle=True,
                                             generator=torch.Generator().manual_seed(0 if seed is None else seed))
        model.train()
        torch.manual_seed(20_000 + (0 if seed is None else seed))  # dropout's masks, seeded with the data order
        aug = torch.Generator().manual_seed(10_000 + (0 if seed is None else seed))
        for epoch in range(1, self.epochs + 1):
            for x, y in loader:
                if self.shift:
                    dx, dy = (int(v) for v in torch.randint(-self.shift, self.shift + 1, (2,), generator=aug))
                    x = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
                if self.flip:
                    x = torch.where((torch.rand(len(x), generator=aug) < 0.5)[:, None, None, None], x.flip(-1), x)
                loss = self.loss(model(x), y).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                if self.per_step:
                    sched.step()
            if not self.per_step:
                sched.step()
            if recorder is not None:
                recorder.record(epoch)
        return model


def _smoothed(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(z, y, label_smoothing=0.1, reduction="none")


def _plain(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(z, y, reduction="none")


def _digits_convnet(seed: int) -> tuple[Any, Any, nn.Module, Loop, Any]:
    data = ddm.data.load("digits")
    cfg = ddm.presets.demo(data).with_overrides(["model.depth=3", "cluster.per_class=6", f"model.seed={seed}"])
    loop = Loop(20, 32, lambda p: torch.optim.SGD(p, lr=0.02, momentum=0.9, nesterov=True, weight_decay=5e-4),
                lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=8, gamma=0.2), _plain)
    return data, cfg, ddm.models.build(cfg.model, data), loop, None


def _fmnist_mlp(seed: int) -> tuple[Any, Any, nn.Module, Loop, Any]:
    data = ddm.data.load(ddm.config.DataConfig(name="fashion-mnist", train_size=3000, test_size=1000))
    cfg = ddm.presets.demo(data).with_overrides(["cluster.per_class=5"])
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
                          nn.Linear(128, 10))
    loop = Loop(15, 64, lambda p: torch.optim.AdamW(p, lr=2e-3, weight_decay=1e-2),
                lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=15), _smoothed)
    return data, cfg, model, loop, ddm.Loss(_smoothed, "ce-smooth-0.1")


def _digits_convnet_shifted(seed: int) -> tuple[Any, Any, nn.Module, Loop, Any]:
    data = ddm.data.load("digits")
    cfg = ddm.presets.demo(data).with_overrides(["model.depth=3", "cluster.per_class=4", f"model.seed={seed}"])
    loop = Loop(30, 32, lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9),
                lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=30), _plain, shift=1)
    return data, cfg, ddm.models.build(cfg.model, data), loop, None


def _fmnist_cnn_bn_dropout(seed: int) -> tuple[Any, Any, nn.Module, Loop, Any]:
    data = ddm.data.load(ddm.config.DataConfig(name="fashion-mnist", train_size=2000, test_size=1000))
    cfg = ddm.presets.demo(data).with_overrides(["cluster.per_class=4"])
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(0.3), nn.Linear(32 * 7 * 7, 64), nn.ReLU(), nn.Dropout(0.3), nn.Linear(64, 10))
    loop = Loop(8, 64, lambda p: torch.optim.AdamW(p, lr=2e-3, weight_decay=1e-2),
                lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=3, gamma=0.3), _plain, flip=True)
    return data, cfg, model, loop, None


def _digits_mlp_adam_decoupled(seed: int) -> tuple[Any, Any, nn.Module, Loop, Any]:
    # Adam with decoupled_weight_decay=True: AdamW's update under Adam's name (torch 2.x)
    data = ddm.data.load("digits")
    cfg = ddm.presets.demo(data).with_overrides(["model.name=mlp", "model.width=64", "model.depth=2",
                                                 "cluster.per_class=4", f"model.seed={seed}"])
    loop = Loop(20, 32, lambda p: torch.optim.Adam(p, lr=1e-3, weight_decay=0.05, decoupled_weight_decay=True),
                lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda e: 1.0), _plain)
    return data, cfg, ddm.models.build(cfg.model, data), loop, None


def _decay_groups(model: nn.Module) -> list[dict[str, Any]]:
    """timm's and many recipes' parameter groups: decay (5e-4) on weight matrices and kernels, none on biases and
    norms, the optimizer's own default decay left at 0."""
    params = [p for p in model.parameters() if p.requires_grad]
    return [{"params": [p for p in params if p.ndim > 1], "weight_decay": 5e-4},
            {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]


def _digits_convnet_decay_groups(seed: int) -> tuple[Any, Any, nn.Module, Loop, Any]:
    data = ddm.data.load("digits")
    cfg = ddm.presets.demo(data).with_overrides(["cluster.per_class=4", f"model.seed={seed}"])
    loop = Loop(20, 32, lambda p: torch.optim.SGD(p, lr=0.02, momentum=0.9),
                lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda e: 1.0), _plain, param_groups=_decay_groups)
    return data, cfg, ddm.models.build(cfg.model, data), loop, None


def _fmnist_mlp_rmsprop_onecycle(seed: int) -> tuple[Any, Any, nn.Module, Loop, Any]:
    # RMSprop with momentum, OneCycleLR stepped every batch (it cycles the rate and the momentum), L2 decay
    data = ddm.data.load(ddm.config.DataConfig(name="fashion-mnist", train_size=3000, test_size=1000))
    cfg = ddm.presets.demo(data).with_overrides(["cluster.per_class=3"])
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 200), nn.ReLU(), nn.Linear(200, 10))
    epochs, batch = 10, 50
    loop = Loop(epochs, batch, lambda p: torch.optim.RMSprop(p, lr=1e-3, momentum=0.9, weight_decay=1e-4),
                lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=1e-3, epochs=epochs,
                                                              steps_per_epoch=-(-3000 // batch)),
                _plain, per_step=True)
    return data, cfg, model, loop, None


def _digits_cnn_nadam_exponential(seed: int) -> tuple[Any, Any, nn.Module, Loop, Any]:
    # a hand-built CNN with max pooling and no normalisation, NAdam with L2 decay, ExponentialLR per epoch
    data = ddm.data.load("digits")
    cfg = ddm.presets.demo(data).with_overrides(["cluster.per_class=5"])
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(32 * 2 * 2, 10))
    loop = Loop(25, 32, lambda p: torch.optim.NAdam(p, lr=2e-3, weight_decay=1e-3),
                lambda o: torch.optim.lr_scheduler.ExponentialLR(o, gamma=0.9), _plain)
    return data, cfg, model, loop, None


CONFIGS = {"digits-convnet-nesterov-steplr-K60": _digits_convnet, "fmnist-mlp-adamw-smooth-cosine-K50": _fmnist_mlp,
           "digits-convnet-shifted-cosine-K40": _digits_convnet_shifted,
           "fmnist-cnn-batchnorm-dropout-flip-adamw-steplr-K40": _fmnist_cnn_bn_dropout,
           # added with the recorder's reading of decoupled decay and of parameter groups
           "digits-mlp-adam-decoupled-K40": _digits_mlp_adam_decoupled,
           "digits-convnet-decay-groups-K40": _digits_convnet_decay_groups,
           # added after 0.28 (probes run as a user would): optimizers and schedules the matrix never had
           "fmnist-mlp-rmsprop-onecycle-K30": _fmnist_mlp_rmsprop_onecycle,
           "digits-cnn-nadam-exponential-K50": _digits_cnn_nadam_exponential}


def unlearn_draws(dm: Any, data: Any, retrain: Retrainer, draws: int) -> list[dict[str, Any]]:
    """``draws`` removals of 4 random groups (seeded) and one of a whole class's groups, each checked against the
    user's loop retrained without them in the target's data order: test accuracy in points."""
    import random

    from ddm.evaluation.check import verify_unlearning

    groups = dm.fitted().groups
    rng = random.Random(0)
    removals = [sorted(rng.sample(range(groups.num_groups), 4)) for _ in range(draws)]
    removals.append(torch.nonzero(groups.labels == 2).flatten().tolist())
    out = []
    for rem in removals:
        r = verify_unlearning(dm, data, rem, dm.unlearn(rem, name="own-loop-draw"), orders=1, retrain=retrain)
        out.append({"groups": rem, "exact": 100 * r["exact"]["test_accuracy"][0],
                    "unlearned": 100 * r["unlearned"]["test_accuracy"], "target": 100 * r["target"]["test_accuracy"],
                    "gap": r["test_gap_points"]})
    return out


def run(name: str, seed: int, root: Path, peers: tuple[str, ...], draws: int = 0,
        overrides: tuple[str, ...] = (), reuse: bool = False) -> dict[str, Any]:
    """The configuration ``name`` trained in its loop, fitted and checked with the loop. ``reuse``: open the
    workspace a run before stored (its target, groups and synset; the check's retrains reused where cached) instead
    of training the target again."""
    data, cfg, model, loop, task = CONFIGS[name](seed)
    kwargs = {"task": task} if task is not None else {}
    ws = root / f"{name}-s{seed}"
    train_s = fit_s = float("nan")
    if reuse and (ws / "config.json").exists():  # the stored target and synset (the loop need not be bit-reproducible)
        dm = ddm.DistilledDatamodel(ws, **kwargs).load(model=model)
        dm.config = dm.config.with_overrides(list(overrides))
        dm.store_group_gradients(data.train)
    else:
        cfg = cfg.with_overrides(list(overrides)) if overrides else cfg
        rec = ddm.TrajectoryRecorder(model)
        t0 = time.perf_counter()
        loop.run(model, data.train, None, rec)
        train_s = time.perf_counter() - t0
        dm = ddm.DistilledDatamodel(ws, cfg, **kwargs)
        t0 = time.perf_counter()
        dm.fit(model, data.train, trajectory=rec.trajectory())
        fit_s = time.perf_counter() - t0

    def retrain(net: nn.Module, train: Any, order: int | None) -> nn.Module:
        return loop.run(net, train, order)

    retrainer = Retrainer(retrain, name=f"own_loop:{name}")
    r = check(dm, data, peers=peers, retrain=retrainer, temperature=None)
    unlearning = unlearn_draws(dm, data, retrainer, draws) if draws else []
    acc = float((ddm.devices.predict(dm.model, data.test.x).argmax(1) == data.test.y).float().mean())
    return {"config": name, "seed": seed, "test_accuracy": acc, "train_seconds": train_s, "fit_seconds": fit_s,
            "groups": r["groups"], "lds": r["lds"], "other_class_lds": r.get("other_class_lds"),
            "advice": r["advice"], "verdict": r["verdict"], "reproduction_dist1": r["reproduction_dist1"],
            "retrain_seconds": r["retrain_seconds"], "unlearning": unlearning}


def render(rows: list[dict[str, Any]], command: str) -> str:
    methods = list(rows[0]["lds"])
    out = ["# Models trained in a user's own loop, checked with that loop", "", f"Command: `{command}`", "",
           "`ddm check` with `retrain=` the loop that trained the model (16 random halves, 15 other-class subsets, "
           "200 targets); LDS / other-class LDS, mean ± bootstrap standard error over subsets and targets.", "",
           "| configuration | seed | test acc | K | " + " | ".join(methods) + " | reproduction Dist1 x100 | advice |",
           "|---|---|---|---|" + "---|" * len(methods) + "---|---|"]
    for r in rows:
        oc = r["other_class_lds"] or {}
        cells = [f"{r['lds'][m]['mean']:.3f} ± {r['lds'][m]['se']:.3f} / "
                 + (f"{oc[m]['mean']:+.3f} ± {oc[m]['se']:.3f}" if m in oc else "–") for m in methods]
        advice = ", ".join(f"{k}={v:g}" for k, v in r["advice"].items()) or "none"
        out.append(f"| {r['config']} | {r['seed']} | {100 * r['test_accuracy']:.1f} | {r['groups']} | "
                   + " | ".join(cells) + f" | {r['reproduction_dist1']:.2f} | {advice} |")
    for r in rows:
        if r.get("unlearning"):
            out += ["", f"Unlearning, {r['config']} seed {r['seed']} (`ddm unlearn` against the user's loop retrained "
                    "without the same groups, the target's data order; test accuracy %):", "",
                    "| groups | exact | unlearned | target | gap |", "|---|---|---|---|---|"]
            out += [f"| {u['groups']} | {u['exact']:.1f} | {u['unlearned']:.1f} | {u['target']:.1f} | {u['gap']:+.2f} |"
                    for u in r["unlearning"]]
    out += ["", "Verdicts:", ""]
    for r in rows:
        out.append(f"* {r['config']}, seed {r['seed']}:")
        out += [f"  * {line}" for line in r["verdict"]]
    return "\n".join(out) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", default=",".join(CONFIGS))
    p.add_argument("--seeds", default="0")
    p.add_argument("--root", default="runs/own-loop")
    p.add_argument("--peers", default="if-explicit,tracin")
    p.add_argument("--out", default="benchmarks/results/own-loop")
    p.add_argument("--unlearn-draws", type=int, default=0, help="also unlearn this many draws of 4 random groups "
                                                                  "and class 2's groups, checked with the loop")
    p.add_argument("--reuse", action="store_true", help="score the workspaces stored by an earlier run (with --set "
                                                           "settings that change no offline stage) without retraining "
                                                           "the target")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a setting applied to every configuration (repeatable; the check's retrains are reused)")
    args = p.parse_args()
    ddm.progress.set_enabled(False)
    peers = tuple(x for x in args.peers.split(",") if x)
    rows = [run(c, int(s), Path(args.root), peers, args.unlearn_draws, tuple(args.set), args.reuse)
            for c in args.configs.split(",") for s in args.seeds.split(",")]
    command = "python benchmarks/own_loop.py " + " ".join(
        f"--{k} {v}" for k, v in (("configs", args.configs), ("seeds", args.seeds), ("out", args.out),
                                  ("unlearn-draws", args.unlearn_draws)) if k != "unlearn-draws" or v) + "".join(
        f" --set {o}" for o in args.set) + (" --reuse" if args.reuse else "")
    atomic_write_text(Path(args.out + ".json"), json.dumps(rows, indent=1))
    atomic_write_text(Path(args.out + ".md"), render(rows, command))
    print(render(rows, command))


if __name__ == "__main__":
    main()
