"""How DDM's cost grows with the number of groups K and the training-set size, against retraining.

For each setting: the offline cost (training with trajectory, distillation), the online cost of one
attribution (emulation of |P| = 2K perturbations + regression), and the time of one exact retrain,
all measured in the same process. Quality is not measured here (see :mod:`ddm.evaluation.protocol`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ddm import data as data_mod
from ddm import models
from ddm.config import RunConfig
from ddm.data.dataset import stratified_subset
from ddm.evaluation.retrain import RetrainCache
from ddm.pipeline import DistilledDatamodel
from ddm.workspace import atomic_write_text, save_json


def measure_scaling(root: str | Path, base: RunConfig, sizes: list[int | None], per_class: list[int],
                    num_targets: int = 20) -> dict[str, Any]:
    """Cost rows for every training size (at ``base``'s clusters per class) and every c (at full size)."""
    root = Path(root)
    data = data_mod.load(base.data)
    targets = data.test[:num_targets]
    settings = [(s, base.cluster.per_class) for s in sizes] + [(None, c) for c in per_class
                                                                 if c != base.cluster.per_class or None not in sizes]
    rows = []
    for size, c in settings:
        cfg = base.with_overrides([f"cluster.per_class={c}", "hierarchical=false"])
        train = stratified_subset(data.train, size, cfg.data.seed)
        name = f"n{len(train)}-c{c}"
        dm = DistilledDatamodel(root / name, cfg)
        dm.fit(models.build(cfg.model, data), train)
        t0 = time.perf_counter()
        attr = dm.attribute(targets, "dist1")
        online = time.perf_counter() - t0
        f = dm.fitted()
        cache = RetrainCache(root / name / "retrain", f.model, f.trajectory.checkpoint(0), train, f.groups, cfg.train,
                             targets.x)
        cache.get([0])
        one = cache.seconds([0])
        p = (attr.meta or {})["perturbations"]
        distill_s = dm.ws.require("synset")["seconds"]
        rows.append({"train_size": len(train), "K": f.groups.num_groups, "perturbations": p,
                     "train_s": dm.ws.require("train")["seconds"], "distill_s": distill_s,
                     "attribute_s": online, "retrain_one_s": one, "retrain_equivalent_s": p * one,
                     "speedup_online": p * one / online,
                     "speedup_with_offline": p * one / (online + distill_s)})
    result = {"dataset": data.summary(), "config": base.to_dict(), "rows": rows}
    save_json(root / "scaling.json", result)
    atomic_write_text(root / "scaling.md", scaling_markdown(result))
    return result


def scaling_markdown(result: dict[str, Any]) -> str:
    out = [f"Data: {result['dataset']}. One seed; seconds on this machine; |P| = 2K perturbations.", "",
           "| train size | K | train | distill (offline) | attribute (online) | one retrain | P retrains | "
           "speedup online | speedup incl. offline |", "|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        out.append(f"| {r['train_size']} | {r['K']} | {r['train_s']:.1f} | {r['distill_s']:.1f} | "
                   f"{r['attribute_s']:.1f} | {r['retrain_one_s']:.2f} | {r['retrain_equivalent_s']:.0f} | "
                   f"{r['speedup_online']:.1f}x | {r['speedup_with_offline']:.1f}x |")
    return "\n".join(out) + "\n"
