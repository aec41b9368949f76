"""What the unlearning scripts on the matrix's stored runs share: their command line (``--root``, ``--configs``,
``--seeds``, ``--out``), the loop over configurations and seeds, each run's 4-group draws with exact retraining's
mean test accuracy over the cached data orders, an unlearned model's gap to it, and a gap's table row."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matrix as M  # noqa: E402
from _results import write_report  # noqa: E402

from ddm import progress  # noqa: E402
from ddm.baselines.unlearners import train_relabelled  # noqa: E402
from ddm.unlearning import forget_classes  # noqa: E402


@dataclass
class Draw:
    """One 4-group draw of a run: ``groups``, the kept training samples (``keep``), the classes left without data
    (``gone``), and exact retraining's test accuracy in each cached data order (``exact``; the target's first) with
    those retrains' test logits (``logits``, in the same order)."""
    groups: list[int]
    keep: torch.Tensor
    gone: list[int]
    exact: list[float]
    logits: list[torch.Tensor]

    @property
    def reference(self) -> float:
        """The mean of exact retraining's orders."""
        return float(np.mean(self.exact))


@dataclass
class Run:
    """A configuration's seed of the matrix opened for the unlearning explorations (``matrix.open_run``): its
    config, data, fitted workspace and retrain cache, with theta_tau's parameters detached (``final``)."""
    cfg: Any
    data: Any
    dm: Any
    cache: Any

    def __post_init__(self) -> None:
        self.fit = self.dm.fitted()
        self.final = {k: v.detach() for k, v in self.fit.trajectory.final.items()}

    @classmethod
    def open(cls, root: Path, name: str, seed: int) -> Run:
        cfg, data, _, dm, cache = M.open_run(root, name, seed)
        return cls(cfg, data, dm, cache)

    def epoch(self, split: Any, targets: torch.Tensor | None = None) -> torch.nn.Module:
        """The relabelled epoch (``train_relabelled``) from theta_tau over ``split``, with soft ``targets`` if given."""
        return train_relabelled(self.fit.model, self.final, split, self.cfg.train, targets=targets)


def scored_draws(dm: Any, cache: Any, data: Any, seed: int, fill: bool = False,
                 classes: bool = False) -> Iterator[tuple[str, Draw]]:
    """The run's unlearning draws (``matrix.unlearning_draws``), each with what its unlearnings are scored against:
    its 4-group draws with exact retraining in the target's order and in the other two where cached (``fill``:
    retrained where missing), and with ``classes`` its class removals (the target's order alone)."""
    groups = dm.groups  # trained and split suffice: no synset read
    assert groups is not None, "scored_draws needs a workspace fitted at least until its groups"
    for kind, rem in M.unlearning_draws(dm, int(data.num_classes)):
        if kind == "class" and not classes:
            continue
        orders = [None] + ([s for s in M.other_orders(seed) if fill or cache.has(rem, seed=s)]
                           if kind == "4 groups" else [])
        logits = [cache.get(rem, seed=s) for s in orders]
        keep = ~torch.isin(groups.assignment, torch.as_tensor(rem))
        yield kind, Draw(rem, keep, sorted(set(range(int(data.num_classes))) - set(data.train.y[keep].tolist())),
                         [float((e.argmax(1) == data.test.y).float().mean()) for e in logits], logits)


def four_group_draws(dm: Any, cache: Any, data: Any, seed: int) -> Iterator[Draw]:
    """The run's 4-group draws (:func:`scored_draws`, the cached orders)."""
    return (d for kind, d in scored_draws(dm, cache, data, seed) if kind == "4 groups")


def test_gap(model: torch.nn.Module, test: Any, gone: list[int], reference: float) -> float:
    """``model``'s test accuracy minus ``reference``, in points, after the classes ``gone`` (left without training
    data) are taken out of its head as ``ddm unlearn`` does (in place)."""
    if gone:
        forget_classes(model, gone)
    model.eval()
    with torch.no_grad():
        return 100 * (float((model(test.x).argmax(1) == test.y).float().mean()) - reference)


def gap_row(label: str, gaps: list[float]) -> str:
    """``| label | within 3 | mean abs gap | mean gap |`` (gaps in points)."""
    g = np.array(gaps)
    return f"| {label} | {int((np.abs(g) <= 3).sum())} of {len(g)} | {np.abs(g).mean():.2f} | {g.mean():+.2f} |"


def variants_report(title: str, labels: list[str], rows: list[dict[str, Any]], command: str) -> str:
    """A report of unlearning variants' gaps on 4-group draws: one :func:`gap_row` per label of ``labels``."""
    lines = [f"# {title}\n\n`{command}`\n",
             f"{len(rows)} draws of 4 groups; gap = test accuracy minus the mean of exact retraining's cached orders "
             "(points).\n", "| variant | within 3 | mean abs gap | mean gap |", "|---|---|---|---|"]
    lines += [gap_row(label, [r[label] for r in rows]) for label in labels]
    return "\n".join(lines) + "\n"


def matrix_report(title: str, labels: list[str], rows: list[dict[str, Any]], command: str) -> str:
    """:func:`variants_report` of the rows' 4-group draws, then each configuration's, the counts against exact
    retraining in the target's order alone (where the rows hold every order, ``exact_orders``) and the class
    removals' (rows of ``kind`` "class", against 5 points)."""
    four = [r for r in rows if r.get("kind", "4 groups") == "4 groups"]
    text = variants_report(title, labels, four, command)
    by_config: dict[str, list[dict[str, Any]]] = {}
    for r in four:
        by_config.setdefault(r["config"], []).append(r)
    text += "\n| configuration | " + " | ".join(f"{v}: within 3 / mean abs gap" for v in labels) + " |\n"
    text += "|---" * (len(labels) + 1) + "|\n"
    for name, rs in by_config.items():
        cells = [f"{sum(abs(r[v]) <= 3 for r in rs)} of {len(rs)} / {np.mean([abs(r[v]) for r in rs]):.2f}"
                 for v in labels]
        text += f"| {name} | " + " | ".join(cells) + " |\n"
    if all(len(r.get("exact_orders", [])) > 1 for r in four):  # against the target's order, and its own spread
        def target(r: dict[str, Any], v: str) -> float:
            return r[v] + 100 * (r["exact"] - r["exact_orders"][0])

        text += ("\nAgainst exact retraining in the target's order alone: within 3 points "
                 + ", ".join(f"{v} {sum(abs(target(r, v)) <= 3 for r in four)}" for v in labels) + " of "
                 + f"{len(four)}; exact retraining in another order "
                 + f"{sum(abs(o - r['exact_orders'][0]) <= 0.03 for r in four for o in r['exact_orders'][1:])} of "
                 + f"{sum(len(r['exact_orders']) - 1 for r in four)} retrains.\n")
    cls = [r for r in rows if r.get("kind") == "class"]
    if cls:
        text += (f"\nClass removals ({len(cls)}; gap against exact retraining in the target's order): within 5 "
                 "points " + ", ".join(f"{v} {sum(abs(r[v]) <= 5 for r in cls)}" for v in labels) + "; mean abs gap "
                 + ", ".join(f"{v} {np.mean([abs(r[v]) for r in cls]):.2f}" for v in labels) + "\n")
    return text


def draw_options(ap: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``--fill`` and ``--classes`` (:func:`scored_draws`) on a :func:`parser`."""
    ap.add_argument("--fill", action="store_true", help="retrain the other two data orders where the cache lacks them")
    ap.add_argument("--classes", action="store_true", help="also the matrix's class removals")
    return ap


def parser(doc: str, configs: str | None = None, seeds: str = "3") -> argparse.ArgumentParser:
    """The shared command line; ``configs`` None makes ``--configs`` required."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--root", default="runs/matrix-b")
    ap.add_argument("--configs", default=configs, required=configs is None)
    ap.add_argument("--seeds", default=seeds)
    ap.add_argument("--out", required=True)
    return ap


def over_runs(args: argparse.Namespace, run: Callable[..., list[dict[str, Any]]], script: str,
              report: Callable[[list[dict[str, Any]], str], str], *extra: Any, threads: int = 2) -> None:
    """``run(name, seed, root, *extra)`` for every configuration and seed of ``args``, reported by ``report`` under
    ``args.out`` with the command that made it."""
    torch.set_num_threads(threads)
    progress.set_enabled(False)
    rows = [r for name in args.configs.split(",") for s in args.seeds.split(",")
            for r in run(name, int(s), Path(args.root), *extra)]
    write_report(args.out, report(rows, f"python benchmarks/{script} " + " ".join(sys.argv[1:])), rows)


def draw_row(name: str, seed: int, kind: str, d: Draw) -> dict[str, Any]:
    """The fields every exploration's row of a draw starts with: configuration, seed, kind, groups, exact retraining's
    mean and orders, and how many training samples the draw removes."""
    return {"config": name, "seed": seed, "kind": kind, "groups": d.groups, "exact": d.reference,
            "exact_orders": d.exact, "removed": int((~d.keep).sum())}


def explore(doc: str, run: Callable[..., list[dict[str, Any]]], script: str, title: str, labels: list[str]) -> None:
    """An exploration's command line (:func:`parser` with :func:`draw_options`): ``run(name, seed, root, fill,
    classes)`` over the configurations and seeds, reported as a :func:`matrix_report` titled ``title`` of ``labels``."""
    args = draw_options(parser(doc)).parse_args()
    over_runs(args, run, script, lambda rows, command: matrix_report(title, labels, rows, command), args.fill,
              args.classes, threads=2)
