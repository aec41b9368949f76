"""``ddm report``: one self-contained HTML page of a workspace (figures embedded as PNG data URIs).

What a reader looks at: each target image beside the groups that most support and most oppose its
prediction (a few member images, class, size, score, and the group's synthetic images), a target x group
heatmap, the class-level view (scores summed per class), the diagnosis list with images, the synset health
checks, the synset grid, and the run's configuration and timings. Rendered with a Jinja2 template
(``templates/report.html``); a small script on the page counts the images that loaded (``data-images-ok``
and ``data-images-broken`` on ``<body>``), which the browser test reads.
"""

from __future__ import annotations

import base64
import io
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ddm import devices
from ddm.exceptions import require
from ddm.reporting.plots import pixels
from ddm.text import signed
from ddm.workspace import atomic_write_text

TEMPLATE = "report.html"


def _png(arr: np.ndarray) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    plt.imsave(buf, arr, cmap="gray", vmin=0, vmax=1, format="png")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _montage(xs: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> str:
    """A row of images with a 1-pixel white gap, as a PNG data URI; feature vectors (gray strips ``[1, D]``: see
    :func:`ddm.reporting.plots.pixels`) one under the other instead, a block of rows."""
    tiles = [pixels(x, mean, std) for x in xs]
    axis = 0 if tiles[0].shape[0] == 1 else 1
    gap = np.ones((1, tiles[0].shape[1], *tiles[0].shape[2:])) if axis == 0 else np.ones(
        (tiles[0].shape[0], 1, *tiles[0].shape[2:]))
    row = [t for tile in tiles for t in (tile, gap)][:-1]
    return _png(np.concatenate(row, axis=axis))


def _figure(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _heatmap(m: np.ndarray, xlabel: str, ylabel: str, title: str, yticks: list[str],
             xticks: list[str] | None = None) -> str:
    from ddm.reporting.plots import _plt

    plt = _plt()
    fig, ax = plt.subplots(figsize=(min(12, 2 + 0.09 * m.shape[1] + (0.3 if xticks else 0) * m.shape[1]),
                                    1.2 + 0.28 * m.shape[0]))
    lim = float(np.abs(m).max()) or 1.0
    im = ax.imshow(m, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto", interpolation="nearest")
    ax.set_yticks(range(len(yticks)), yticks, fontsize=7)
    if xticks is not None:
        ax.set_xticks(range(len(xticks)), xticks, fontsize=7, rotation=90)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.03)
    return _figure(fig)


def _group_card(dm: Any, data: Any, g: int, score: float, names: list[str], members: int) -> dict[str, Any]:
    groups = dm.groups
    rows = groups.members(g)
    ids = groups.member_ids(g).tolist()
    n = groups.num_classes_of(g)
    label = names[int(groups.labels[g])] if n == 1 else f"mixed: {n} classes, most {names[int(groups.labels[g])]}"
    return {"group": g, "label": label, "size": len(rows), "score": score,
            "members": ids[:members], "flagged": g in set(dm.flagged_groups()),
            "member_img": _montage(data.train.x[rows[:members]], data.mean, data.std),
            # as many synthetic images as member images: a grown synset's 16 would run off the page
            "synset_img": _montage(dm.synset.images[g][:members], data.mean, data.std)}


def build_report(dm: Any, data: Any, targets: list[int], objective: str = "dist2", top_k: int = 3,
                 out: str | Path | None = None, members: int = 8) -> Path:
    """Write the report of a fitted or loaded :class:`~ddm.pipeline.DistilledDatamodel` to ``out``
    (default ``<workspace>/report.html``) and return its path. ``targets``: rows of the test split."""
    require("matplotlib", "report")
    require("jinja2", "report")
    import jinja2

    from ddm.diagnosis import Diagnosis, diagnose
    from ddm.reporting.plots import synset_grid
    from ddm.train.loop import accuracy

    t0 = time.perf_counter()
    names = data.class_names or [str(c) for c in range(data.num_classes)]
    split = data.test[targets]
    attr = dm.attribute(split, objective, name="report")
    pred = devices.predict(dm.model, split.x).argmax(1).tolist()
    rows = []
    for i, tid in enumerate(targets):
        order = torch.argsort(attr.scores[i], descending=True).tolist()
        rows.append({"test_index": tid, "label": names[int(split.y[i])], "predicted": names[pred[i]],
                     "correct": int(split.y[i]) == pred[i],
                     "img": _png(pixels(split.x[i], data.mean, data.std)),
                     "support": [_group_card(dm, data, g, float(attr.scores[i, g]), names, members)
                                 for g in order[:top_k]],
                     "oppose": [_group_card(dm, data, g, float(attr.scores[i, g]), names, members)
                                for g in order[::-1][:top_k]]})
    by_class = torch.argsort(dm.groups.labels, stable=True)
    ylab = [f"#{t}" for t in targets]
    heat = _heatmap(attr.scores[:, by_class].numpy(), "group (sorted by class)", "test sample",
                    f"{objective} score of every group", ylab)
    cls = np.stack([[float(attr.scores[i, dm.groups.labels == c].sum()) for c in range(data.num_classes)]
                    for i in range(len(targets))])
    class_heat = _heatmap(cls, "training class (summed group scores)", "test sample", "class-level view", ylab,
                          names)
    # diagnosis: the saved one, else computed when it is cheap (the Newton emulation)
    diag_path = dm.ws.path("diagnosis", "ddm-loss.json")
    diag_note = None
    diag: Diagnosis | None = None
    if diag_path.exists():
        diag = Diagnosis.load(diag_path)
        diag_note = f"from {diag_path.relative_to(dm.ws.root)}"
    elif dm.emulation_method() == "newton":
        n = len(data.test)
        diag = diagnose(dm, data.test[: max(1, n // 2)], "loss", name="report-diagnosis")
        diag_note = f"validation: the first {max(1, n // 2)} test samples (as `ddm diagnose` by default)"
    diagnosis = None
    if diag is not None:
        flagged = set(diag.issues())
        diagnosis = {"note": diag_note, "rule": diag.default_rule, "flagged": len(flagged),
                     "score_meaning": diag.score_meaning,
                     "rows": [{**_group_card(dm, data, r["group"], r["quality"], names, members),
                               "bounded": r["score"], "issue": r["group"] in flagged}
                              for r in diag.table(10)]}
    stages = []
    for st in ("train", "groups", "synset", "groups-class", "synset-class"):
        info = dm.ws.stage_info(st)
        if info and info.get("complete"):
            stages.append({"stage": st, "seconds": info.get("seconds")})
    synset_info = dm.ws.stage_info("synset") or {}
    health = synset_info.get("health") or {}
    recipe = dm.config.distill.matching
    grid = _figure(synset_grid([(f"synthetic images ({recipe} matching): first image of each group", dm.synset)],
                               dm.groups, data))
    context = {
        "workspace": str(dm.ws.root), "dataset": data.summary(), "objective": objective,
        "score_meaning": attr.score_meaning, "test_accuracy": accuracy(dm.model, data.test),
        "K": dm.groups.num_groups, "ipc": dm.synset.ipc, "shown": members, "recipe": recipe,
        "emulation": dm.emulation_method(),
        "targets": rows, "heatmap": heat, "class_heatmap": class_heat, "diagnosis": diagnosis,
        "health": {k: v for k, v in health.items() if not isinstance(v, list) or k == "flagged"},
        "retried": {int(k): min(v) for k, v in (synset_info.get("retried") or {}).items()},
        "stages": stages, "attribution_seconds": (attr.meta or {}).get("seconds"), "grid": grid,
        "config": json.dumps(dm.config.to_dict(), indent=1), "generated": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    env = jinja2.Environment(loader=jinja2.PackageLoader("ddm.reporting", "templates"),
                             autoescape=jinja2.select_autoescape(["html"]), undefined=jinja2.StrictUndefined)
    env.filters["signed"] = signed
    context["build_seconds"] = time.perf_counter() - t0
    html = env.get_template(TEMPLATE).render(**context)
    path = Path(out) if out is not None else dm.ws.path("report.html")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, html)
    return path
