"""The paper's protocol against exact retraining (Table 1), group-level LDS, noise floor and cost.

For every seed: the target model, its groups and the DDM variants (DDM-full, DDM-match, DDM w/o
cluster) are built in ``<root>/seed<S>/<variant>``; each method picks one group per target and
objective; the model retrained without that group gives Avgdist (Eq. 10). The reported targets are
a fixed random subset of the test split; the next ``num_targets`` of the same permutation are
reserved as *validation* targets for choosing hyperparameters, never reported here.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ddm import data as data_mod
from ddm import models
from ddm.baselines.simple import clustering_based, predict_based, random_choice
from ddm.config import RunConfig
from ddm.data.dataset import Split
from ddm.emulate.perturbations import sample_perturbations
from ddm.evaluation.metrics import dist_metrics, lds, mean_std, rank_agreement
from ddm.evaluation.retrain import RetrainCache
from ddm.exceptions import ConfigError
from ddm.pipeline import DistilledDatamodel
from ddm.workspace import save_json

log = logging.getLogger(__name__)
DISTS = ("dist1", "dist2", "dist3")
VARIANTS = {"DDM-full": [], "DDM-match": ["distill.matching=match"], "DDM w/o cluster": ["cluster.method=sequential"]}
TARGET_SEED = 12345


@dataclass
class EvalConfig:
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    num_targets: int = 20
    lds_subsets: int = 50
    lds_keep: float = 0.5
    logo: bool = False
    noise_seeds: int = 2

    def __post_init__(self) -> None:
        if not self.seeds:
            raise ConfigError("give at least one seed")
        if self.num_targets <= 0 or self.lds_subsets < 0 or self.noise_seeds < 0:
            raise ConfigError("num_targets must be positive; lds_subsets and noise_seeds >= 0")
        if not 0 < self.lds_keep < 1:
            raise ConfigError("lds_keep must be in (0, 1)")


def split_targets(test: Split, n: int) -> tuple[Split, Split]:
    """(reported, validation) targets: disjoint, fixed random subsets of the test split."""
    if 2 * n > len(test):
        raise ConfigError(f"need {2 * n} test samples for {n} reported + {n} validation targets; test has {len(test)}")
    perm = torch.randperm(len(test), generator=torch.Generator().manual_seed(TARGET_SEED))
    return test[perm[:n].sort().values], test[perm[n : 2 * n].sort().values]


def seeded(cfg: RunConfig, seed: int) -> RunConfig:
    return cfg.with_overrides([f"{s}.seed={seed}" for s in ("model", "train", "cluster", "distill", "emulate")]
                              + ["hierarchical=false"])


def _evaluate_seed(root: Path, base: RunConfig, data: Any, targets: Split, ecfg: EvalConfig, seed: int) -> dict:
    cfg = seeded(base, seed)
    out: dict[str, Any] = {"table1": {}, "lds": {}, "cost": {}}
    dms: dict[str, DistilledDatamodel] = {}
    attrs: dict[str, dict[str, Any]] = {}
    for name, sets in VARIANTS.items():
        c = cfg.with_overrides(sets)
        dm = DistilledDatamodel(root / f"seed{seed}" / name.replace(" ", "_").replace("/", ""), c)
        dm.fit(models.build(c.model, data), data.train)
        t0 = time.perf_counter()
        attrs[name] = {d: dm.attribute(targets, d) for d in DISTS}
        out["cost"][name] = {"distill_s": dm.ws.stage_info("synset")["seconds"],
                             "train_s": dm.ws.stage_info("train")["seconds"],
                             "attribute_s": time.perf_counter() - t0,
                             "perturbations": attrs[name]["dist1"].meta["perturbations"]}
        dms[name] = dm
    full = dms["DDM-full"]
    with torch.no_grad():
        full_logits = full.model(targets.x)
    caches = {}
    for dm in dms.values():
        gkey = dm.keys["groups"]
        if gkey not in caches:
            caches[gkey] = RetrainCache(root / f"seed{seed}" / "retrain" / gkey, dm.model, dm.trajectory[0],
                                        data.train, dm.groups, dm.config.train, targets.x)
    cache = caches[full.keys["groups"]]

    choices: dict[str, tuple[Any, dict[str, torch.Tensor]]] = {
        "Random": (cache, dict.fromkeys(DISTS, random_choice(len(targets), full.groups, seed))),
        "Predict-based": (cache, dict.fromkeys(DISTS, predict_based(full.model, data.train, full.groups, targets))),
        "Clustering-based": (cache, dict.fromkeys(DISTS, clustering_based(data.train, full.groups, targets))),
    }
    for name, dm in dms.items():
        choices[name] = (caches[dm.keys["groups"]], {d: attrs[name][d].ranking_all()[:, 0] for d in DISTS})
    if ecfg.logo:
        logo = cache.many([[k] for k in range(full.groups.num_groups)], "leave-one-group-out")
        assert logo is not None
        truth = {d: torch.stack([dist_metrics(logo[k], full_logits, targets.y)[d] for k in range(len(logo))], 1)
                 for d in DISTS}  # [T, K]
        choices["Exact leave-one-group-out (oracle)"] = (cache, {d: truth[d].argmax(1) for d in DISTS})
        out["logo_rank_agreement"] = {
            name: {"dist1": rank_agreement(attrs[name]["dist1"].scores, truth["dist1"]),
                   "dist2": rank_agreement(attrs[name]["dist2"].scores, truth["dist2"])}
            for name in ("DDM-full", "DDM-match")}
    for method, (c, picks) in choices.items():
        row = {}
        for d in DISTS:
            removed = torch.stack([c.get([int(g)])[t] for t, g in enumerate(picks[d])])
            row[d] = 100 * float(dist_metrics(removed, full_logits, targets.y)[d].mean())
        out["table1"][method] = row

    if ecfg.lds_subsets:
        K = full.groups.num_groups
        keep = sample_perturbations(K, ecfg.lds_subsets, ecfg.lds_keep, seed=10_000 + seed)
        sets = [torch.nonzero(~k).flatten().tolist() for k in keep]
        retrained = cache.many(sets, "LDS retrains")
        assert retrained is not None
        actual = torch.nn.functional.cross_entropy(retrained.transpose(1, 2), targets.y.expand(len(sets), -1),
                                                   reduction="none")  # [M, T]
        for name in ("DDM-full", "DDM-match"):
            pred = attrs[name]["dist2"].predict(keep)[..., 0]
            out["lds"][name] = lds(pred, actual)[0]
        out["lds_subsets_retrain_s"] = float(np.mean([cache.seconds(s) for s in sets]))

    # noise floor: the same retraining on all data, with the target's data order and with others
    same = cache.get([])
    noise = {"same_seed_dist1": 100 * float(dist_metrics(same, full_logits, targets.y)["dist1"].mean())}
    others = [100 * float(dist_metrics(cache.get([], seed=1000 + i), full_logits, targets.y)["dist1"].mean())
              for i in range(ecfg.noise_seeds)]
    if others:
        noise["other_seed_dist1"] = float(np.mean(others))
    out["noise_floor"] = noise
    t_re = cache.seconds([])
    for name in dms:
        cst = out["cost"][name]
        cst["retrain_one_s"] = t_re
        cst["retrain_equivalent_s"] = cst["perturbations"] * t_re
        cst["speedup_online"] = cst["retrain_equivalent_s"] / cst["attribute_s"]
        cst["speedup_with_offline"] = cst["retrain_equivalent_s"] / (cst["attribute_s"] + cst["distill_s"])
    out["test_accuracy"] = float((full.model(data.test.x).argmax(1) == data.test.y).float().mean())
    return out


def evaluate(root: str | Path, base: RunConfig, ecfg: EvalConfig) -> dict[str, Any]:
    """Run the protocol for every seed; returns per-seed results and mean/std summaries (also saved)."""
    root = Path(root)
    data = data_mod.load(base.data)
    targets, _validation = split_targets(data.test, ecfg.num_targets)
    t0 = time.perf_counter()
    per_seed = {s: _evaluate_seed(root, base, data, targets, ecfg, s) for s in ecfg.seeds}
    result = {"dataset": data.summary(), "config": base.to_dict(), "eval": ecfg.__dict__,
              "targets": targets.index.tolist(), "seconds": time.perf_counter() - t0,
              "per_seed": per_seed, "summary": summarise(per_seed)}
    save_json(root / "evaluation.json", result)
    (root / "evaluation.md").write_text(markdown(result))
    return result


def summarise(per_seed: dict[int, dict]) -> dict[str, Any]:
    runs = list(per_seed.values())
    s: dict[str, Any] = {"table1": {}, "lds": {}, "cost": {}, "noise_floor": {}}
    for m in runs[0]["table1"]:
        s["table1"][m] = {d: mean_std([r["table1"][m][d] for r in runs]) for d in DISTS}
    for m in runs[0]["lds"]:
        s["lds"][m] = mean_std([r["lds"][m] for r in runs])
    for m in runs[0]["cost"]:
        s["cost"][m] = {k: mean_std([r["cost"][m][k] for r in runs]) for k in runs[0]["cost"][m]}
    for k in runs[0]["noise_floor"]:
        s["noise_floor"][k] = mean_std([r["noise_floor"][k] for r in runs])
    if "logo_rank_agreement" in runs[0]:
        s["logo_rank_agreement"] = {m: {d: mean_std([r["logo_rank_agreement"][m][d] for r in runs])
                                        for d in ("dist1", "dist2")} for m in runs[0]["logo_rank_agreement"]}
    s["test_accuracy"] = mean_std([r["test_accuracy"] for r in runs])
    return s


def _ms(v: tuple[float, float], fmt: str = "{:.2f}") -> str:
    return f"{fmt.format(v[0])} ± {fmt.format(v[1])}"


def markdown(result: dict[str, Any]) -> str:
    s = result["summary"]
    e = result["eval"]
    lines = [f"Data: {result['dataset']}", f"Seeds: {e['seeds']}; {e['num_targets']} reported test targets; "
             f"values are mean ± std over seeds; target-model test accuracy {_ms(s['test_accuracy'], '{:.3f}')}.", "",
             "Table 1 analog (Avgdist x100 of the model retrained without the chosen group; larger is better "
             "for all three, Dist3 picks the *least* influential group):", "",
             "| method | Dist1 | Dist2 | Dist3 |", "|---|---|---|---|"]
    for m, row in s["table1"].items():
        lines.append(f"| {m} | " + " | ".join(_ms(row[d]) for d in DISTS) + " |")
    nf = s["noise_floor"]
    lines += ["", "Noise floor (Dist1 x100 between the target and a retrain on all data): same seed "
              f"{_ms(nf['same_seed_dist1'])}" + (f", other data-order seeds {_ms(nf['other_seed_dist1'])}"
                                                 if "other_seed_dist1" in nf else "") + "."]
    if s["lds"]:
        lines += ["", f"Group-level LDS ({e['lds_subsets']} random subsets keeping {e['lds_keep']:.0%} of the groups, "
                  "exact retraining each; Spearman of predicted vs retrained test loss on the true label, "
                  "averaged over targets):", "", "| method | LDS |", "|---|---|"]
        lines += [f"| {m} | {_ms(v, '{:.3f}')} |" for m, v in s["lds"].items()]
    if "logo_rank_agreement" in s:
        lines += ["", "Spearman of each method's scores with exact leave-one-group-out effects (over groups, "
                  "averaged over targets):", "", "| method | Dist1 | Dist2 |", "|---|---|---|"]
        lines += [f"| {m} | {_ms(v['dist1'], '{:.3f}')} | {_ms(v['dist2'], '{:.3f}')} |"
                  for m, v in s["logo_rank_agreement"].items()]
    lines += ["", "Cost (seconds, same run):", "",
              "| variant | distill (offline) | attribute (online) | one retrain | retraining replaced "
              "(P retrains) | speedup online | speedup incl. offline |", "|---|---|---|---|---|---|---|"]
    for m, c in s["cost"].items():
        lines.append(f"| {m} | {_ms(c['distill_s'], '{:.1f}')} | {_ms(c['attribute_s'], '{:.1f}')} | "
                     f"{_ms(c['retrain_one_s'], '{:.2f}')} | {_ms(c['retrain_equivalent_s'], '{:.0f}')} | "
                     f"{_ms(c['speedup_online'], '{:.1f}')}x | {_ms(c['speedup_with_offline'], '{:.1f}')}x |")
    lines += ["", f"Total evaluation time: {result['seconds']:.0f} s."]
    return "\n".join(lines) + "\n"
