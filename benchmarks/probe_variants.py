"""Probe one DDM variant against the cached ground truth of `make bench-digits` (issue 5 ablations).

    python benchmarks/probe_variants.py SEED NAME [stage.field=value ...]
    e.g. python benchmarks/probe_variants.py 0 local-soft distill.matching=local distill.labels=learned \
             distill.distance=relative_mse

Fits the variant (flat groups, the benchmark's own groups and target model) under
runs/probe/seed<SEED>/<NAME>, then for fine-tune learning-rate multipliers 0.1, 0.3, 1, 3 prints
group-level LDS on the 20 *validation* targets / 20 validation subsets (for choosing), and on the 20
reported targets / 50 LDS subsets, plus Dist1 x100 of the leave-one-group-out retrain of the group
picked by the dist1 attribution. Needs the retrains cached by `make bench-digits` (--logo) for SEED.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

import ddm
from ddm import models, presets
from ddm.emulate.perturbations import sample_perturbations
from ddm.evaluation.metrics import dist_metrics, lds
from ddm.evaluation.protocol import _loss, _Truth, seeded, split_targets
from ddm.pipeline import DistilledDatamodel


def main() -> None:
    seed, name, sets = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
    torch.set_num_threads(1)
    ddm.progress.set_enabled(False)
    data = ddm.data.load("digits")
    base = seeded(presets.get("demo", data), seed)
    ref = DistilledDatamodel(f"runs/bench-digits/seed{seed}/DDM-full", base.with_overrides(["hierarchical=True"]))
    ref.load()
    cfg = base.with_overrides(["hierarchical=False", *sets])
    dm = DistilledDatamodel(f"runs/probe/seed{seed}/{name}", cfg)
    t0 = time.time()
    dm.fit(models.build(cfg.model, data), data.train)
    print(f"{name}: fit {time.time() - t0:.1f} s (distillation {dm.ws.require('synset')['seconds']:.1f} s)")
    if dm.keys["groups"] != ref.keys["groups"]:
        raise SystemExit("the variant's groups differ from the benchmark's: the cached ground truth does not apply")
    truth = _Truth(Path(f"runs/bench-digits/seed{seed}"), ref, data)
    rows, val = split_targets(len(data.test), 20)
    K = dm.fitted().groups.num_groups
    keep = sample_perturbations(K, 50, 0.5, seed=10_000 + seed)
    actual = _loss(truth.many_test([torch.nonzero(~k).flatten().tolist() for k in keep], "lds")[:, rows],
                   data.test.y[rows])
    vkeep = sample_perturbations(K, 20, 0.5, seed=20_000 + seed)
    vactual = _loss(truth.many_test([torch.nonzero(~k).flatten().tolist() for k in vkeep], "val")[:, val],
                    data.test.y[val])
    full = dm.fitted().model(data.test.x[rows]).detach()
    logo = torch.stack([truth.test([k])[rows] for k in range(K)], 1)
    y = data.test.y[rows]
    base_lr = dm.finetune_lr
    for mult in (0.1, 0.3, 1.0, 3.0):
        dm.config = cfg.with_overrides([f"emulate.finetune_lr={base_lr * mult}"])
        v = dm.attribute(data.test[val], "dist2", name=f"val-{mult:g}")
        r = dm.attribute(data.test[rows], "dist2", name=f"rep-{mult:g}")
        pick = dm.attribute(data.test[rows], "dist1", name=f"dist1-{mult:g}").ranking_all()[:, 0]
        d1 = dist_metrics(logo[torch.arange(len(rows)), pick], full, y)["dist1"].mean()
        print(f"{name} x{mult:g}: validation LDS {lds(v.predict(vkeep)[..., 0], vactual)[0]:+.3f}  "
              f"reported LDS {lds(r.predict(keep)[..., 0], actual)[0]:+.3f}  Dist1x100 {100 * float(d1):.1f}",
              flush=True)


if __name__ == "__main__":
    main()
