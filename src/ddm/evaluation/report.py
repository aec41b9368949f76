"""Mean ± std summaries over seeds and the markdown report of :mod:`ddm.evaluation.protocol`."""

from __future__ import annotations

from typing import Any

import numpy as np

DISTS = ("dist1", "dist2", "dist3")
#: Dist1 x100 above which a same-seed retrain on all the data counts as not reproducing the target
SAME_SEED_TOLERANCE = 0.01


def mean_std(values: list[float]) -> tuple[float, float]:
    a = np.asarray(values, dtype=np.float64)
    return float(a.mean()), (float(a.std(ddof=1)) if len(a) > 1 else 0.0)


class OneSeed(tuple):  # type: ignore[type-arg]
    """A ``(mean, std)`` pair of a one-seed summary: the report shows its value alone, not a std of 0."""


def _one_seed(v: Any) -> Any:
    """A summary's ``(mean, std)`` pairs (tuples in process, lists read back from JSON) marked :class:`OneSeed`."""
    if isinstance(v, dict):
        return {k: _one_seed(x) for k, x in v.items()}
    if (isinstance(v, (list, tuple)) and len(v) == 2
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)):
        return OneSeed(v)
    return v


def _nested(runs: list[Any]) -> Any:
    """Mean ± std, leaf by leaf, of identically shaped nested dicts of numbers."""
    first = runs[0]
    if isinstance(first, dict):
        return {k: _nested([r[k] for r in runs]) for k in first if all(k in r for r in runs)}
    if isinstance(first, (int, float)) and not isinstance(first, bool):
        return mean_std([float(r) for r in runs])
    return first


def summarise(per_seed: dict[int, dict]) -> dict[str, Any]:
    return _nested(list(per_seed.values()))


def _ms(v: tuple[float, float], fmt: str = "{:.2f}") -> str:
    if isinstance(v, OneSeed):  # no spread to show
        return fmt.format(v[0])
    return f"{fmt.format(v[0])} ± {fmt.format(v[1])}"


def markdown(result: dict[str, Any]) -> str:
    s = result["summary"]
    e = result["eval"]
    if len(e["seeds"]) == 1:
        s = _one_seed(s)
    pct = "{:.1f}"
    out = [f"Data: {result['dataset']}",
           f"Seeds {e['seeds']}; {e['num_targets']} reported test targets (validation targets disjoint); "
           + ("mean ± std over seeds" if len(e["seeds"]) > 1 else "one seed, so no spread (more --seeds give a std)")
           + f". Target-model test accuracy {_ms(s['test_accuracy'], '{:.3f}')}."]
    left: dict[str, list[str]] = {}  # variants whose attribution failed on a seed
    for seed, r in result.get("per_seed", {}).items():
        for name, why in r.get("left_out", {}).items():
            left.setdefault(name, []).append(f"seed {seed}: {why}")
    for name, whys in left.items():
        out += ["", f"**{name} is left out** of every table below (" + "; ".join(whys) + "): the tables average a "
                "method over seeds only where it ran on every seed."]
    if "tuning" in s:
        t = s["tuning"]
        out += ["", f"Fine-tune learning rate chosen on validation targets (LDS on {e['tune_subsets']} validation "
                f"subsets) among multipliers {list(e['tune'])} of the training rate: chosen multiplier "
                f"{_ms(t['chosen_multiplier'], '{:.2g}')}; validation LDS per multiplier: "
                + ", ".join(f"x{m}: {_ms(v, '{:.3f}')}" for m, v in t["validation_lds"].items()) + "."]
    out += ["", "**Table 1 analog.** Avgdist x100 (Eq. 10) of the model retrained without the group each method "
            "picks; larger is better in every column (Dist3 rewards picking the *least* influential group).", "",
            "| method | Dist1 | Dist2 | Dist3 |", "|---|---|---|---|"]
    out += [f"| {m} | " + " | ".join(_ms(r[d]) for d in DISTS) + " |" for m, r in s["table1"].items()]
    nf = s["noise_floor"]
    out += ["", f"Noise floor, Dist1 x100 between the target and a retrain on all data: same seed "
            f"{_ms(nf['same_seed_dist1'])}" + (f"; other data-order seeds {_ms(nf['other_seed_dist1'])}"
                                               if "other_seed_dist1" in nf else "") + "."]
    if nf["same_seed_dist1"][0] > SAME_SEED_TOLERANCE:
        out[-1] += (" **The same-seed retrain does not reproduce the target**: the retrains carry nondeterminism "
                    "(a thread count other than the target's, another device, or nondeterministic kernels), so "
                    "every comparison below holds only above this floor.")
    if s.get("lds"):
        oc = s.get("other_class_lds", {})
        out += ["", f"**Group-level LDS.** {e['lds_subsets']} random subsets keeping {e['lds_keep']:.0%} of the "
                "groups, each exactly retrained; Spearman (over subsets) of predicted vs retrained test loss on "
                "the true label, averaged over targets. *Same class (trivial)* only marks the groups of the "
                "target's own class: a method below it ranks nothing the class labels do not."]
        if oc:
            out[-1] += (f" *Other-class LDS*: {e.get('other_class_subsets', '')} subsets per target class that keep "
                        "every group of that class and half of the others, scored on that class's targets (the "
                        "trivial score gets 0 there): the ranking of the other classes' data.")
        out += ["", "| method | LDS | other-class LDS |", "|---|---|---|"]
        out += [f"| {m} | {_ms(v, '{:.3f}')} | {_ms(oc[m], '{:.3f}') if m in oc else '-'} |"
                for m, v in s["lds"].items()]
    if "logo_rank_agreement" in s:
        out += ["", "Spearman over groups between each method's scores and exact leave-one-group-out effects:", "",
                "| method | Dist1 | Dist2 |", "|---|---|---|"]
        out += [f"| {m} | {_ms(v['dist1'], '{:.3f}')} | {_ms(v['dist2'], '{:.3f}')} |"
                for m, v in s["logo_rank_agreement"].items()]
    if "peer_cost" in s:
        out += _table2(s, e)
    if "diagnosis" in s:
        out += _table3(s["diagnosis"], e)
    out += ["", "**Unlearning fidelity** against exact retraining without the same random groups: accuracy (%), "
            "mean JS divergence to the retrained model's outputs, top-1 agreement with it (%), on the test split "
            "and on the removed training data.", ""]
    for setting, entry in s["unlearning"].items():
        rows = entry["unlearners"]
        out += [f"Removing {setting} ({_ms(entry['samples'], '{:.0f}')} training samples):", "",
                "| unlearner | test acc | test JS | test agree | removed acc | "
                "removed JS | removed agree |", "|---|---|---|---|---|---|---|"]
        for name, r in rows.items():
            t, f = r["test"], r["removed"]
            out.append(f"| {name} | {_ms(_x100(t['accuracy']), pct)} | {_ms(t['js'], '{:.3f}')} | "
                       f"{_ms(_x100(t['agreement']), pct)} | {_ms(_x100(f['accuracy']), pct)} | "
                       f"{_ms(f['js'], '{:.3f}')} | {_ms(_x100(f['agreement']), pct)} |")
        out.append("")
    t4 = s["table4"]
    out += ["**Table 4 analog** (test accuracy %): Normal = theta_0 and the target; DDM-match = theta_0 trained on "
            "the whole gradient-matching synset; DDM = the target fine-tuned on the whole synset of the "
            "configured recipe, at the (tuned) fine-tune rate (should fall towards theta_0) and the target.", "",
            "| method | Acc(theta_0) | Acc(theta_tau) |", "|---|---|---|"]
    out += [f"| {m} | {_ms(_x100(v['acc_theta0']), pct)} | {_ms(_x100(v['acc_theta_tau']), pct)} |"
            for m, v in t4.items()]
    out += ["", "**Privacy.** Mean cosine similarity of each synthetic image to its nearest training image "
            "(1 = a copy): " + "; ".join(f"{m} {_ms(v, '{:.3f}')}" for m, v in s["privacy"].items()) + "."]
    out += ["", "**Cost** (seconds, same run). Retraining replaced = min(|P|, 2 K) exact retrains of the data a "
            "perturbation keeps (one retrain: the mean recorded time of the LDS subsets' retrains, about half the "
            "data), the work the emulation stands in for.", "",
            "| variant | train | distill (offline) | attribute (online) | one retrain | "
            "retraining replaced | speedup online | speedup incl. offline |", "|---|---|---|---|---|---|---|---|"]
    for m, c in s["cost"].items():
        out.append(f"| {m} | {_ms(c['train_s'], '{:.1f}')} | {_ms(c['distill_s'], '{:.1f}')} | "
                   f"{_ms(c['attribute_s'], '{:.1f}')} | {_ms(c['retrain_one_s'], '{:.2f}')} | "
                   f"{_ms(c['retrain_equivalent_s'], '{:.0f}')} | {_ms(c['speedup_online'], '{:.1f}')}x | "
                   f"{_ms(c['speedup_with_offline'], '{:.1f}')}x |")
    out += ["", f"Total evaluation time: {result['seconds']:.0f} s."]
    return "\n".join(out) + "\n"


def _table2(s: dict[str, Any], e: dict[str, Any]) -> list[str]:
    """DDM next to the peer methods on the same targets, groups and retraining ground truth."""
    out = ["", "**Table 2 analog: DDM next to its peers.** Dist1 x100 of the retrain without each method's "
           "most influential group (largest |score|), group-level LDS (peers: first-order sum of member scores), "
           "Spearman with exact leave-one-group-out loss changes (if measured), and the method's wall time for "
           f"the {e['num_targets']} targets (DDM: online attribution of three objectives; offline distillation "
           "in the cost table).", "", "| method | Dist1 | LDS | vs leave-one-group-out | seconds |",
           "|---|---|---|---|---|"]
    agree = s.get("logo_rank_agreement", {})
    rows = [m for m in ("DDM-full", "DDM-match") if m in s["table1"]] + list(s["peer_cost"])
    for m in rows:
        secs = s["peer_cost"][m] if m in s["peer_cost"] else s["cost"][m]["attribute_s"]
        lds_v = _ms(s["lds"][m], "{:.3f}") if m in s.get("lds", {}) else "-"
        ag = _ms(agree[m]["dist2"], "{:.3f}") if m in agree else "-"
        out.append(f"| {m} | {_ms(s['table1'][m]['dist1'])} | {lds_v} | {ag} | {_ms(secs, '{:.1f}')} |")
    for m in ("Random", "Exact leave-one-group-out (oracle)"):
        if m in s["table1"]:
            out.append(f"| {m} | {_ms(s['table1'][m]['dist1'])} | - | - | - |")
    return out


def _table3(d: dict[str, Any], e: dict[str, Any]) -> list[str]:
    out = ["", f"**Table 3 analog: data diagnosis.** Groups ranked by predicted usefulness for the validation "
           f"loss ({d['validation_size'][0]:.0f} test samples, disjoint from those accuracy is measured on); the "
           "least useful fraction of the training data removed, the model retrained, test accuracy (%) on the "
           "other test samples. Done on the clean training set and on one with "
           f"{e['noise_fraction']:.0%} of the labels flipped.", ""]
    for setting in ("clean", "noisy"):
        t = d[setting]["table3"]
        fr = list(next(iter(t.values())))
        out += [f"{setting.capitalize()} labels; all data: {_ms(_x100(d[setting]['accuracy_all']), '{:.1f}')}.", "",
                "| method | " + " | ".join(f"-{f}" for f in fr) + " |", "|---|" + "---|" * len(fr)]
        out += [f"| {m} | " + " | ".join(_ms(_x100(r[f]), "{:.1f}") for f in fr) + " |" for m, r in t.items()]
        out.append("")
    n = d["noisy"]["detection"]
    out += [f"**Label-noise detection** ({e['noise_fraction']:.0%} of training labels flipped to another class): "
            "ROC AUC of each method's suspicion score for the flipped samples, and precision among the "
            "top-k (k = number flipped). DDM scores a sample by its group's usefulness; peers by self-influence; "
            "cleanlab from 3-fold out-of-sample probabilities of the same model.", "",
            "| method | AUC | precision@k | seconds |", "|---|---|---|---|"]
    out += [f"| {m} | {_ms(r['auc'], '{:.3f}')} | {_ms(r['precision_at_k'], '{:.3f}')} | "
            f"{_ms(r['seconds'], '{:.1f}')} |" for m, r in n.items()]
    return out


def _x100(v: tuple[float, float]) -> tuple[float, float]:
    scaled = (100 * v[0], 100 * v[1])
    return OneSeed(scaled) if isinstance(v, OneSeed) else scaled
