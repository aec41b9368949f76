"""Is DDM right on *this* model? A few exact retrains of a finished workspace, scored like the benchmarks.

``ddm evaluate`` builds its own seeds, variants and peers from scratch; this check takes a workspace a user already
has (their model, their groups, their synset) and retrains the model from its theta_0 with the same schedule on
``subsets`` random halves of the groups, plus ``other_class`` subsets that keep a few classes whole and half of the
other groups. It reports the group-level LDS of DDM's predicted target losses (``dist2``) beside the floor every
method must clear (a score that only marks the target's own class) and, on the kept classes' targets over the
subsets that keep them whole, the other-class LDS (where that floor scores 0). One more retrain on all the data
tells whether retraining reproduces the target at all.

Each per-target score is a Spearman correlation over the subsets, averaged over targets; its standard error is a
bootstrap over subsets and targets together (targets share their retrains), so a handful of subsets gives a rough
answer and more give a finer one. Retrains are cached under ``<workspace>/check/retrain/`` and resume after a kill;
the result is written to ``<workspace>/check/check.json``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import torch

from ddm import devices
from ddm.baselines.peers import predicted_loss
from ddm.cluster.groups import Groups
from ddm.emulate.perturbations import sample_perturbations
from ddm.evaluation.metrics import dist_metrics
from ddm.evaluation.protocol import TARGET_SEED, _loss, _peer_group_scores, _Truth, subset_losses
from ddm.evaluation.report import SAME_SEED_TOLERANCE
from ddm.evaluation.retrain import Retrainer, folder_key_parts, retrainer_for
from ddm.exceptions import ConfigError
from ddm.pipeline import DistilledDatamodel
from ddm.workspace import load_json, save_json

log = logging.getLogger(__name__)
TRIVIAL = "same class (trivial)"
SCHEDULE = "DDM + schedule term"
BALANCE = "DDM, class balance refitted"
DAMPING = "DDM, damping refitted"
TEMPERED = "DDM, tempered synsets"
#: the temperature of the cross-entropy the check distils a second synset with (distill.head_temperature; BENCHMARKS.md,
#: "A tempered cross-entropy in the synsets")
TRY_TEMPERATURE = 2.0
#: the values of emulate.other_class_scale the check tries
SCALES = (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)
#: the values of emulate.damping_scale the check tries (a multiple of the synset's damping, distill.damping)
DAMPING_SCALES = (0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
#: the draws of the check's subsets (apart from the benchmarks' and the protocol's, which use 10,000 + seed)
SUBSET_SEED = 40_000


def check_targets(num_test: int, n: int) -> torch.Tensor:
    """The first ``n`` test rows of a fixed permutation (the protocol's), sorted: the targets the check scores."""
    if n < 2:
        raise ConfigError("the check needs at least 2 targets (--num-targets)")
    perm = torch.randperm(num_test, generator=torch.Generator().manual_seed(TARGET_SEED))
    return perm[: min(n, num_test)].sort().values


#: the draw of the subsets :func:`calibrate` retrains on (the check's are drawn from :data:`SUBSET_SEED`)
CALIBRATION_SEED = 50_000
#: the random halves and other-class subsets :func:`calibrate` retrains on (the check's defaults)
CALIBRATION_SUBSETS, CALIBRATION_OTHER_CLASS = 16, 15
#: the fewest test rows outside the check's own targets that :func:`calibrate` scores by themselves; with fewer it
#: scores every test row (on its own subsets still)
CALIBRATION_MIN_TARGETS = 50


def calibration_cost(train_seconds: float, synset_seconds: float, mixes_classes: bool) -> tuple[int, float]:
    """``(retrains, seconds)``: how many exact retrains :func:`calibrate` runs and about how long it takes, from the
    target's training and the synset stage's seconds: the retrains, most on half the data, plus the tempered synsets'
    distillation and the emulations at about twice the synset stage (the random draws' checks: BENCHMARKS.md, "`ddm
    run` calibrates")."""
    n = CALIBRATION_SUBSETS + (0 if mixes_classes else CALIBRATION_OTHER_CLASS) + 1
    return n, n * 0.6 * train_seconds + 2 * synset_seconds + 10


def calibration_targets(num_test: int, n: int = 200, check: int = 200) -> tuple[torch.Tensor, bool]:
    """``(rows, disjoint)``: the test rows :func:`calibrate` scores: up to ``n`` of those outside the check's own
    ``check`` targets (:func:`check_targets`), so that a later ``ddm check`` scores the calibrated settings on
    targets, as well as subsets, the calibration never saw; every test row (``disjoint`` False) where fewer than
    :data:`CALIBRATION_MIN_TARGETS` are left."""
    taken = torch.zeros(num_test, dtype=torch.bool)
    taken[check_targets(num_test, check)] = True
    free = torch.nonzero(~taken).flatten()
    if len(free) < CALIBRATION_MIN_TARGETS:
        return torch.arange(num_test)[: max(n, 2)], False
    perm = torch.randperm(len(free), generator=torch.Generator().manual_seed(CALIBRATION_SEED))
    return free[perm[:n]].sort().values, True


def calibrate(dm: DistilledDatamodel, data: Any,
              retrain: Retrainer | Callable[..., torch.nn.Module | None] | None = None,
              save: bool = True) -> dict[str, Any]:
    """The check (:func:`check`, with no peers) on test rows and random subsets of its own
    (:func:`calibration_targets`, :data:`CALIBRATION_SEED`), written to ``check/calibration.json`` (unless ``save`` is
    false): what ``ddm run --calibrate`` runs before it keeps the advice (:func:`calibrate_and_keep`). The retrains
    are cached beside the check's; a later ``ddm check`` scores the result on subsets and targets the calibration did
    not choose on."""
    rows, disjoint = calibration_targets(len(data.test))
    r = check(dm, data, subsets=CALIBRATION_SUBSETS, other_class=CALIBRATION_OTHER_CLASS, retrain=retrain, rows=rows,
              seed=CALIBRATION_SEED, result=None)
    r["targets_disjoint_from_check"] = disjoint
    if save:
        save_json(dm.ws.path("check") / "calibration.json", r)
    return r


def apply_advice(dm: DistilledDatamodel, advice: dict[str, float], train: Any) -> bool:
    """Keep a check's ``advice`` (:func:`advice`) as the workspace's settings: tempered synsets the check distilled
    become its own (:meth:`~ddm.pipeline.DistilledDatamodel.adopt_variant`), emulation settings go into its
    ``config.json`` (:meth:`~ddm.pipeline.DistilledDatamodel.keep_settings`). True where the synsets were replaced
    (the rest of the advice is then refitted on them by another check, which retrains nothing)."""
    t = advice.get("distill.head_temperature")
    if t is not None:
        dm.adopt_variant(train, temperature_overrides(t), temperature_stage(t))
        return True
    if advice:
        dm.keep_settings([f"{k}={v:g}" for k, v in advice.items()])
    return False


def advised_lds(r: dict[str, Any]) -> dict[str, float] | None:
    """The LDS of the row a check's advice stands for (the tempered synsets, refitted schedule term, balance or
    damping, each fitted on top of the next), on the check's own targets and subsets; None where it advises nothing."""
    t = r.get("temperature")
    if t is not None and t.get("recommended"):
        return t["lds"]
    s = r.get("schedule_term")
    if s is not None and s.get("recommended") and s["configured"] == 0:
        return s["lds"]
    for key in ("class_balance", "damping"):
        d = r.get(key)
        if d is not None and d.get("recommended"):
            return d["lds"]
    return None


def calibrate_and_keep(dm: DistilledDatamodel, data: Any,
                       retrain: Retrainer | Callable[..., torch.nn.Module | None] | None = None) -> dict[str, Any]:
    """:func:`calibrate`, then its advice kept (:func:`apply_advice`; where that replaced the synsets, a second
    calibration on the same retrains refits the rest on them): what ``ddm run --calibrate`` and
    :meth:`~ddm.pipeline.DistilledDatamodel.calibrate` do. Returns, and adds to ``check/calibration.json``, what was
    kept (``kept``) and DDM's LDS on the calibration's targets before and with it (``lds_before``, ``lds_after``;
    None where nothing was kept)."""
    import time

    start = time.perf_counter()
    first = r = calibrate(dm, data, retrain, save=False)
    changed = apply_advice(dm, r["advice"], data.train)
    if changed:
        r = calibrate(dm, data, retrain, save=False)
        apply_advice(dm, r["advice"], data.train)
    kept = {**first["advice"], **r["advice"]} if changed else r["advice"]
    after = advised_lds(r) or (r["lds"]["DDM"] if changed else None)
    res = {"kept": kept, "lds_before": first["lds"]["DDM"], "lds_after": after,
           "seconds": time.perf_counter() - start, "targets": len(r["targets"]),
           "targets_disjoint_from_check": r["targets_disjoint_from_check"], "lds": r["lds"],
           "other_class_lds": r.get("other_class_lds"), "damping": r.get("damping"),
           "saved": str(dm.ws.path("check", "calibration.json"))}
    save_json(dm.ws.path("check", "calibration.json"), {**r, **{k: res[k] for k in ("kept", "lds_before",
                                                                                    "lds_after")}})
    return res


def _spearman_columns(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman correlation of every column pair of ``a`` and ``b`` ``[M, T]`` (average ranks for ties; 0 where a
    column is constant, as :func:`ddm.evaluation.metrics.spearman`)."""
    from scipy.stats import rankdata  # here: about 1 s to import (:func:`ddm.evaluation.metrics.spearman`)

    ra, rb = rankdata(a, axis=0), rankdata(b, axis=0)
    ra, rb = ra - ra.mean(0), rb - rb.mean(0)
    den = np.sqrt((ra**2).sum(0) * (rb**2).sum(0))
    return np.divide((ra * rb).sum(0), den, out=np.zeros(a.shape[1]), where=den > 0)


def bootstrap_lds(blocks: list[tuple[dict[str, torch.Tensor], torch.Tensor]], reps: int = 500,
                  seed: int = 0) -> dict[str, dict[str, float]]:
    """LDS of each method with its standard error, and the paired margin of the first method over each other one.

    ``blocks``: (predicted losses per method ``[M_b, T_b]``, retrained losses ``[M_b, T_b]``): the targets of a block
    share its subsets (e.g. the random halves, or the subsets that keep some classes whole). Targets that share retrains
    are not independent, so the error is a bootstrap over both: each repetition redraws every block's subsets and then
    the targets, with replacement, and recomputes the mean Spearman. Returns ``{method: {"mean", "se"}}`` plus
    ``"<method> - <first method>"`` entries for the paired differences."""
    names = list(blocks[0][0])
    gen = np.random.default_rng(seed)
    data = [({n: p[n].double().numpy() for n in names}, a.double().numpy()) for p, a in blocks]
    full = {n: np.concatenate([_spearman_columns(p[n], a) for p, a in data]) for n in names}
    draws: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(reps):
        per: dict[str, list[np.ndarray]] = {n: [] for n in names}
        for p, a in data:
            i = gen.integers(0, len(a), len(a))
            for n in names:
                per[n].append(_spearman_columns(p[n][i], a[i]))
        cat = {n: np.concatenate(v) for n, v in per.items()}
        j = gen.integers(0, len(cat[names[0]]), len(cat[names[0]]))
        for n in names:
            draws[n].append(float(cat[n][j].mean()))
    out = {n: {"mean": float(full[n].mean()), "se": float(np.std(draws[n], ddof=1))} for n in names}
    for n in names[1:]:
        diff = np.asarray(draws[names[0]]) - np.asarray(draws[n])
        out[f"{names[0]} - {n}"] = {"mean": float((full[names[0]] - full[n]).mean()), "se": float(diff.std(ddof=1))}
    return out


def check(dm: DistilledDatamodel, data: Any, num_targets: int = 200, subsets: int = 16, other_class: int = 15,
          other_classes: int = 3, peers: tuple[str, ...] = (),
          retrain: Retrainer | Callable[..., torch.nn.Module | None] | None = None,
          temperature: float | None = TRY_TEMPERATURE, rows: torch.Tensor | None = None, seed: int = SUBSET_SEED,
          result: str | None = "check.json") -> dict[str, Any]:
    """Score ``dm`` (a loaded or fitted workspace) against exact retraining on a few random group subsets.

    Returns (and writes to ``check/check.json``) the LDS and other-class LDS of DDM, the trivial same-class score and
    the ``peers`` (methods of :mod:`ddm.baselines.peers`, summed per group), each as a mean and standard error over
    targets and subsets, the paired margin of DDM over the trivial score, the retraining's reproduction of the
    target, the retrains' seconds, and ``verdict``: the lines the command line prints. The other-class LDS is
    measured on ``other_class`` subsets (0 skips it) that keep the ``other_classes`` classes with the most targets
    whole and half of the other groups, scored on those classes' targets. ``retrain``: the training loop of a
    trajectory handed in (``fn(model, train[, seed])``, :class:`~ddm.evaluation.retrain.Retrainer`); None retrains
    with ddm's own loop (``train.*``), which a handed-in trajectory refuses. ``temperature``: a second synset is
    distilled with the cross-entropy at this temperature (``distill.head_temperature``; cached under
    ``check/synset-temperature-T``, the workspace's own synset untouched) and scored beside the configured one on the
    same retrains; advised as :func:`_temperature_choice` says (None or the configured temperature: no second synset;
    only synsets matched to the head with the cross-entropy). ``rows``, ``seed`` and ``result``: the test rows scored
    (default :func:`check_targets`), the draw of the subsets, and the file under ``check/`` the result is written to
    (None: none; :func:`calibrate` scores other targets on other subsets and writes its own)."""
    if subsets < 4 or 0 < other_class < 4:
        raise ConfigError(f"the check needs at least 4 random subsets and 0 or at least 4 other-class subsets "
                          f"(got {subsets} and {other_class}): a Spearman correlation over fewer says nothing")
    if other_classes < 1:
        raise ConfigError("other_classes must be at least 1 (set other_class to 0 to skip the other-class LDS)")
    if temperature is not None and not (temperature > 0 and np.isfinite(temperature)):
        raise ConfigError(f"the temperature the check tries must be a positive number (got {temperature!r}); "
                          "0 or None tries none")
    retrainer = retrainer_for(dm, retrain)
    F = dm.fitted()
    rows = check_targets(len(data.test), num_targets) if rows is None else rows
    targets = data.test[rows]
    root = dm.ws.path("check")
    truth = _Truth(root, dm, data, retrainer)
    attr = dm.attribute(targets, "dist2", name="check")
    keep, actual = subset_losses(truth, F.groups.num_groups, subsets, 0.5, seed, rows, targets.y,
                                 "check: retrains on random halves")
    same = (F.groups.labels[None, :] == targets.y[:, None]).float()  # [T, K]
    predict: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
        "DDM": lambda k: attr.predict(k)[..., 0], TRIVIAL: partial(predicted_loss, same)}
    for method in peers:
        predict[method] = partial(predicted_loss, _peer_group_scores(root, method, F, data.train, targets, rows)[0])
    temperature = tried_temperature(dm, temperature)
    tried = _tempered_predictor(dm, data, targets, temperature)
    if tried is not None:
        predict[TEMPERED] = tried
    term = _schedule_term(dm, targets)
    configured = dm.config.emulate.schedule_weight
    # the emulation's damping (emulate.damping_scale; the Newton step of a head-matched synset only) chosen on the
    # random halves; advised only where it ranks them better beyond two standard errors, and then the class balance
    # and the schedule term below are fitted on top of it
    damping, on_top = None, []
    if F.synset.kind == "head" and not F.synset.block:
        damped = _damped_predictor(dm, targets)
        damping = damping_choice(damped, dm.config.emulate.damping_scale, keep, actual, seed)
        if damping["recommended"]:
            predict[DAMPING] = damped(damping["scale"])
            on_top = [f"emulate.damping_scale={damping['scale']!r}"]
    # the class balance in use (emulate.other_class_scale, or emulate.switched_class_scale where other classes'
    # weights disagree between the steps: DistilledDatamodel.class_balance) chosen on the random halves; advised only
    # where it ranks them
    # better beyond two standard errors
    balanced = _balanced_predictor(dm, targets, term, on_top)
    configured_balance, balance_setting = dm.class_balance
    balance = {**balance_choice(balanced, configured_balance, keep, actual, seed), "setting": balance_setting}
    base = DAMPING if DAMPING in predict else "DDM"
    if balance["recommended"]:
        predict[BALANCE] = balanced(balance["scale"])
        base = BALANCE
    if term is not None:
        # a retrain without part of the data takes fewer steps (ddm.attribution.schedule): the term's weight is fitted
        # on the random halves and put beside the attribution (the configured weight's share taken out first; on top
        # of the refitted class balance where that is advised)
        unit = term(keep)
        without = predict[base](keep) - configured * unit
        weight = schedule_weight(without, unit, actual)
        predict[SCHEDULE] = lambda k: predict[base](k) + (weight - configured) * term(k)
        spread = schedule_spread(without, weight * unit)
    aside = (BALANCE, SCHEDULE, DAMPING, TEMPERED)
    main = bootstrap_lds([({n: f(keep) for n, f in predict.items()}, actual)], seed=seed)
    out: dict[str, Any] = {"synset_key": dm.keys["synset"], "targets": rows.tolist(), "subsets": subsets,
                           "groups": F.groups.num_groups, "one_per_class": F.groups.one_per_class(),
                           "lds": {n: main[n] for n in predict if n not in aside},
                           "margin_over_trivial": main[f"DDM - {TRIVIAL}"],
                           "margin_over_peers": {m: main[f"DDM - {m}"] for m in peers}}
    balance["lds"] = main[base]  # the refitted balance's row where advised, else what it was fitted on
    out["class_balance"] = balance
    if damping is not None:
        damping["lds"] = main[DAMPING] if DAMPING in main else main["DDM"]
        out["damping"] = damping
    if term is not None:
        out["schedule_term"] = {"weight": weight, "configured": configured, "lds": main[SCHEDULE],
                                "margin": _margin(main, predict, keep, actual, base, seed), "over": base,
                                "spread": spread}
    other: tuple[dict[str, Callable[[torch.Tensor], torch.Tensor]], torch.Tensor, torch.Tensor] | None = None
    subsets_oc = other_class_subsets(F.groups, targets.y, data.num_classes, other_class, other_classes, seed)
    if subsets_oc is not None:
        chosen, masks, sel = subsets_oc
        logits = truth.many_test([torch.nonzero(~m).flatten().tolist() for m in masks],
                                 f"check: retrains keeping classes {chosen} whole")
        oc_actual = _loss(logits[:, rows[sel]], targets.y[sel])
        sub: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
            n: partial(_columns, f, sel) for n, f in predict.items()}
        oc = bootstrap_lds([({n: f(masks) for n, f in sub.items()}, oc_actual)], seed=seed + 1)
        out["other_class_lds"] = {n: oc[n] for n in predict if n not in aside}
        out["other_class_margin_over_peers"] = {m: oc[f"DDM - {m}"] for m in peers}
        other = (sub, masks, oc_actual)
        if term is not None:
            out["schedule_term"]["other_class_lds"] = oc[SCHEDULE]
            out["schedule_term"]["other_class_margin"] = _margin(oc, sub, masks, oc_actual, base, seed + 1)
        if balance["recommended"]:
            balance["other_class_lds"] = oc[BALANCE]
        if damping is not None and damping["recommended"]:
            damping["other_class_lds"] = oc[DAMPING]
        out["other_classes"], out["other_class_subsets"] = chosen, other_class
    elif F.groups.mixes_classes():
        out["other_class_note"] = "the groups mix classes: no subset keeps one class whole"
    full = devices.predict(F.model, data.test.x[rows])  # eval mode: a batch norm's running statistics
    out["reproduction_dist1"] = 100 * float(dist_metrics(truth.test([])[rows], full, targets.y)["dist1"].mean())
    out["retrain_threads"] = truth.cache.threads  # the target's recorded CPU thread count (None: not recorded)
    if retrainer is not None:
        out["retrain"] = retrainer.name
    out["retrain_seconds"] = float(np.mean([truth.cache.seconds(torch.nonzero(~k).flatten().tolist()) for k in keep]))
    if term is not None:
        out["schedule_term"]["recommended"] = schedule_recommended(out)
    balance["recommended"] = balance["recommended"] and balance_keeps_other_classes(out)
    if damping is not None and damping["recommended"] and not damping_keeps_other_classes(out):
        # the damping costs other classes' ranking: neither it nor what was fitted on top of it is advised
        damping["recommended"] = False
        damping["withdrawn"] = "other-class LDS"
        balance["recommended"] = False
        if "schedule_term" in out:
            out["schedule_term"]["recommended"] = False
    if tried is not None:
        out["temperature"] = _temperature_choice(out, predict, keep, actual, other, float(temperature or 0),
                                                 dm.synset_temperature)
    out["advice"] = advice(out)
    out["verdict"] = verdict(out)
    out["passed"] = out["margin_over_trivial"]["mean"] > 0 and out.get("other_class_lds", {}).get(
        "DDM", {"mean": 1.0})["mean"] > 0
    if result is not None:
        save_json(root / result, out)
    return out


def other_class_subsets(groups: Groups, y: torch.Tensor, num_classes: int, subsets: int = 15, classes: int = 3,
                        seed: int = SUBSET_SEED) -> tuple[list[int], torch.Tensor, torch.Tensor] | None:
    """The check's other-class subsets: ``(chosen, masks [subsets, K], sel)``, keep-masks that keep the ``classes``
    classes with the most targets (labels ``y``) whole and half of every other class's groups, and the targets they
    serve (for those only other classes' data is removed, and the trivial same-class score gets 0). None where
    there are none: ``subsets`` 0, groups that mix classes, or no class to keep beside another."""
    counts = torch.bincount(y, minlength=num_classes)
    n_keep = min(classes, int((counts > 0).sum()), int((torch.bincount(groups.labels, minlength=num_classes) > 0)
                                                       .sum()) - 1)
    if not subsets or groups.mixes_classes() or n_keep < 1:
        return None
    chosen = sorted(torch.argsort(-counts, stable=True)[:n_keep].tolist())  # the classes with most targets
    masks = sample_perturbations(groups.num_groups, subsets, 0.5, seed=seed + 1_000)
    masks[:, torch.isin(groups.labels, torch.as_tensor(chosen))] = True
    return chosen, masks, torch.nonzero(torch.isin(y, torch.as_tensor(chosen))).flatten()


def advice(r: dict[str, Any]) -> dict[str, float]:
    """The settings a check's result ``r`` advises, ``{"STAGE.FIELD": value}`` (empty: keep the workspace's):
    the damping and class balance where :func:`damping_choice` and :func:`balance_choice` found better ones, and the
    schedule term's fitted weight where :func:`schedule_recommended` says so and none is configured; or, where the
    tempered synset ranks better than all of that (:func:`_temperature_choice`), only its
    ``distill.head_temperature``. What ``ddm check --apply`` keeps
    (:meth:`ddm.pipeline.DistilledDatamodel.keep_settings`, :meth:`~ddm.pipeline.DistilledDatamodel.adopt_variant`)."""
    t = r.get("temperature")
    if t is not None and t.get("recommended"):
        # the other settings were fitted on the synsets in use; a check after the new synsets refits them
        return {"distill.head_temperature": float(t["temperature"])}
    out = {}
    d = r.get("damping")
    if d is not None and d.get("recommended"):
        out["emulate.damping_scale"] = float(d["scale"])
    b = r.get("class_balance")
    if b is not None and b.get("recommended"):
        out[b.get("setting", "emulate.other_class_scale")] = float(b["scale"])
    s = r.get("schedule_term")
    if s is not None and s.get("recommended") and s["configured"] == 0:
        out["emulate.schedule_weight"] = float(f"{s['weight']:.3g}")
    return out


def _attribute_with(dm: DistilledDatamodel, targets: Any, overrides: list[str], name: str, **kwargs: Any) -> Any:
    """``dm``'s ``dist2`` attribution of the ``targets`` with emulation ``overrides`` in place for this call only (the
    workspace's configuration is given back however it ends)."""
    configured = dm.config
    try:
        dm.config = configured.with_overrides(overrides)
        return dm.attribute(targets, "dist2", name=name, **kwargs)
    finally:
        dm.config = configured


def _balanced_predictor(dm: DistilledDatamodel, targets: Any, term: Callable[[torch.Tensor], torch.Tensor] | None,
                        overrides: list[str] | None = None
                        ) -> Callable[[float], Callable[[torch.Tensor], torch.Tensor]]:
    """``at(scale)``: DDM's predicted losses of the ``targets`` for keep-masks ``[S, K]`` -> ``[S, T]`` with the
    class balance ``emulate.other_class_scale = scale`` (the configured schedule term included; ``overrides``: other
    emulation settings, e.g. a refitted damping): the emulation's weights before the balance, balanced afterwards, as
    the attribution does."""
    from ddm.attribution.fit import balance_classes

    # the weights before the balance and without the schedule term, which is added back below
    raw = _attribute_with(dm, targets, [*(overrides or []), "emulate.schedule_weight=0"], "check-unbalanced",
                          other_class_scale=1.0)
    groups, weight = dm.fitted().groups, dm.config.emulate.schedule_weight

    def at(scale: float) -> Callable[[torch.Tensor], torch.Tensor]:
        w, b = balance_classes(raw.weights, raw.bias, groups, targets.y, scale)

        def predict(keep: torch.Tensor) -> torch.Tensor:
            p = torch.einsum("pk,tk->pt", keep.float(), w[..., 0]) + b[None, :, 0]
            return p + weight * term(keep) if term is not None and weight else p

        return predict

    return at


def _best_on_halves(candidates: tuple[float, ...], at: Callable[[float], Callable[[torch.Tensor], torch.Tensor]],
                    configured: float, keep: torch.Tensor, actual: torch.Tensor, seed: int) -> dict[str, Any]:
    """The value among ``candidates`` (and the ``configured`` one) whose predictor ``at(value)`` ranks the random
    halves ``keep`` best (mean Spearman over targets against the retrained losses ``actual``), its paired margin over
    the configured value (bootstrap over subsets and targets), and ``recommended``: another value, better by more
    than two standard errors."""
    values = sorted({*candidates, configured})
    a = actual.double().numpy()
    pred = {s: at(s)(keep) for s in values}
    mean = {s: float(_spearman_columns(pred[s].double().numpy(), a).mean()) for s in values}
    best = max(values, key=lambda s: (mean[s], s == configured))
    r = bootstrap_lds([({"best": pred[best], "configured": pred[configured]}, actual)], seed=seed)
    margin = r["best - configured"]
    return {"scale": best, "configured": configured, "by_scale": {f"{s:g}": round(v, 4) for s, v in mean.items()},
            "margin": margin, "recommended": bool(best != configured and margin["mean"] - 2 * margin["se"] > 0)}


def balance_choice(at: Callable[[float], Callable[[torch.Tensor], torch.Tensor]], configured: float,
                   keep: torch.Tensor, actual: torch.Tensor, seed: int = SUBSET_SEED) -> dict[str, Any]:
    """The class balance among :data:`SCALES` (and the ``configured`` one) that ranks the random halves ``keep``
    best, its paired margin over the configured balance, and ``recommended``: another balance, better by more than
    two standard errors (:func:`_best_on_halves`; the benchmarks: ``balance_calibration.py``)."""
    return _best_on_halves(SCALES, at, configured, keep, actual, seed + 2)


def damping_choice(at: Callable[[float], Callable[[torch.Tensor], torch.Tensor]], configured: float,
                   keep: torch.Tensor, actual: torch.Tensor, seed: int = SUBSET_SEED) -> dict[str, Any]:
    """The emulation's damping (``emulate.damping_scale``) among :data:`DAMPING_SCALES` (and the ``configured``
    one) that ranks the random halves ``keep`` best, its paired margin over the configured one, and
    ``recommended``: another, better by more than two standard errors (:func:`_best_on_halves`; the benchmarks:
    ``damping_calibration.py``)."""
    return _best_on_halves(DAMPING_SCALES, at, configured, keep, actual, seed + 3)


def _damped_predictor(dm: DistilledDatamodel, targets: Any
                      ) -> Callable[[float], Callable[[torch.Tensor], torch.Tensor]]:
    """``at(scale)``: DDM's predicted losses of the ``targets`` for keep-masks ``[S, K]`` -> ``[S, T]`` with
    ``emulate.damping_scale = scale`` and every other setting as configured (one emulation per scale)."""
    def at(scale: float) -> Callable[[torch.Tensor], torch.Tensor]:
        attr = _attribute_with(dm, targets, [f"emulate.damping_scale={scale!r}"], "check-damping")
        return lambda keep: attr.predict(keep)[..., 0]

    return at


def damping_keeps_other_classes(r: dict[str, Any]) -> bool:
    """Whether the refitted damping keeps the other-class LDS (where measured) within two standard errors of the
    configured one: unlike the class balance, the damping reorders other classes' groups too."""
    d, oc = r.get("damping"), r.get("other_class_lds")
    if d is None or oc is None or "other_class_lds" not in d:
        return True
    return bool(d["other_class_lds"]["mean"] >= oc["DDM"]["mean"] - 2 * oc["DDM"]["se"])


def balance_keeps_other_classes(r: dict[str, Any]) -> bool:
    """Whether the refitted balance keeps the other-class LDS (where measured) within two standard errors of the
    configured one: the balance does not reorder other classes' groups, but next to a configured schedule term it
    changes their weight against the term's."""
    b, oc = r["class_balance"], r.get("other_class_lds")
    if oc is None or "other_class_lds" not in b:
        return True
    return bool(b["other_class_lds"]["mean"] >= oc["DDM"]["mean"] - 2 * oc["DDM"]["se"])


def _columns(f: Callable[[torch.Tensor], torch.Tensor], sel: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    return f(keep)[:, sel]


def _margin(boot: dict[str, Any], predict: dict[str, Callable[[torch.Tensor], torch.Tensor]], keep: torch.Tensor,
            actual: torch.Tensor, base: str, seed: int) -> dict[str, float]:
    """The schedule term's paired margin over the prediction it is added to (``base``): from ``boot`` where that is
    DDM, else from a bootstrap of the two with the same draws."""
    if base == "DDM":
        return _flip(boot[f"DDM - {SCHEDULE}"])
    pair = bootstrap_lds([({base: predict[base](keep), SCHEDULE: predict[SCHEDULE](keep)}, actual)], seed=seed)
    return _flip(pair[f"{base} - {SCHEDULE}"])


def temperature_stage(temperature: float) -> str:
    """The workspace stage the check distils its tempered synset into (``check/synset-temperature-T``)."""
    return f"check/synset-temperature-{temperature:g}"


def temperature_overrides(temperature: float) -> list[str]:
    """The settings of a synset distilled at ``temperature`` and kept there (``distill.auto_temperature`` off)."""
    return [f"distill.head_temperature={temperature!r}", "distill.auto_temperature=0"]


def tried_temperature(dm: DistilledDatamodel, temperature: float | None) -> float | None:
    """The temperature the check tries beside the synsets in use when asked for ``temperature``: that one, or, where
    the synset stage switched to it on its own (``distill.auto_temperature``), the configured one it switched from
    (the check then measures the switch)."""
    if temperature is not None and temperature == dm.synset_temperature != dm.config.distill.head_temperature:
        return dm.config.distill.head_temperature
    return temperature


def tries_temperature(dm: DistilledDatamodel, temperature: float | None) -> bool:
    """Whether the check distils a second synset at ``temperature`` for ``dm``: not for None or the temperature of
    the synsets in use, nor for synsets not matched to the head with the cross-entropy (``distill.matching=head``, the
    default; a custom training loss carried instead has no temperature)."""
    d = dm.config.distill
    if temperature is None or temperature == dm.synset_temperature or d.matching != "head":
        return False
    if d.head_loss != "cross-entropy" and not dm.task.is_default:
        return False
    F = dm.fitted()
    return F.synset.kind == "head" and not F.synset.block


def _tempered_predictor(dm: DistilledDatamodel, data: Any, targets: Any, temperature: float | None
                        ) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """DDM's predicted losses of the ``targets`` (keep-masks ``[S, K]`` -> ``[S, T]``) with a synset distilled at
    ``temperature`` and every emulation setting as configured; None where :func:`tries_temperature` says there is
    nothing to try."""
    if not tries_temperature(dm, temperature):
        return None
    assert temperature is not None
    log.info("check: distilling a second synset with the cross-entropy at temperature %g (cached under %s)",
             temperature, dm.ws.path(temperature_stage(temperature)))
    variant = dm.distill_variant(data.train, temperature_overrides(temperature), temperature_stage(temperature))
    attr = variant.attribute(targets, "dist2", name="check-temperature")
    return lambda k: attr.predict(k)[..., 0]


def _advised_row(r: dict[str, Any]) -> str:
    """The row of a check's result ``r`` that its other advice (damping, balance, schedule term) would give."""
    s, b, d = r.get("schedule_term"), r["class_balance"], r.get("damping")
    if s is not None and s.get("recommended") and s["configured"] == 0:
        return SCHEDULE
    if b.get("recommended"):
        return BALANCE
    if d is not None and d.get("recommended"):
        return DAMPING
    return "DDM"


def _temperature_choice(r: dict[str, Any], predict: dict[str, Callable[[torch.Tensor], torch.Tensor]],
                        keep: torch.Tensor, actual: torch.Tensor, other: Any, temperature: float,
                        configured: float) -> dict[str, Any]:
    """The tempered synset's scores and paired margins over the synsets in use, both with the configured emulation
    settings (``margin``), on the random halves and, where measured (``other``: predictors, masks and retrained losses
    of the other-class subsets), on other classes' targets (``other_class_margin``); and over the row the check's other
    advice gives, where it advises any (``against``, ``margin_over_advice``). ``recommended``: a gain over the synsets
    in use beyond two standard errors on the random halves or on other classes' targets, a loss beyond two on
    neither, and no LDS loss beyond two against the other advice (which a check after the new synsets refits on them).
    The other-class gain counts since the full Fashion-MNIST probe, where the plain synsets the automatic switch had
    replaced ranked other classes' groups better by 0.19 ± 0.07 at an LDS margin of -0.027 ± 0.021 (BENCHMARKS.md,
    "The full Fashion-MNIST training set")."""
    row = _advised_row(r)
    rows = ["DDM"] if row == "DDM" else ["DDM", row]
    pair = bootstrap_lds([({TEMPERED: predict[TEMPERED](keep), **{n: predict[n](keep) for n in rows}}, actual)],
                         seed=SUBSET_SEED)
    out: dict[str, Any] = {"temperature": temperature, "configured": configured, "against": row,
                           "lds": pair[TEMPERED], "margin": pair[f"{TEMPERED} - DDM"]}
    if row != "DDM":
        out["margin_over_advice"] = pair[f"{TEMPERED} - {row}"]
    if other is not None:
        sub, masks, oc_actual = other
        oc = bootstrap_lds([({TEMPERED: sub[TEMPERED](masks), "DDM": sub["DDM"](masks)}, oc_actual)],
                           seed=SUBSET_SEED + 1)
        out["other_class_lds"], out["other_class_margin"] = oc[TEMPERED], oc[f"{TEMPERED} - DDM"]
    out["recommended"] = temperature_recommended(out)
    return out


def temperature_recommended(t: dict[str, Any]) -> bool:
    """Whether the check advises the synsets distilled at another temperature, from their paired margins ``t``
    (:func:`_temperature_choice`): a gain beyond two standard errors on the random halves (``margin``) or on other
    classes' targets (``other_class_margin``, where measured), a loss beyond two on neither, and no loss beyond two
    against the check's other advice (``margin_over_advice``, where it advises any)."""
    sides = [_beyond(t[k]) for k in ("margin", "other_class_margin") if t.get(k) is not None]
    over = t.get("margin_over_advice")
    return max(sides) > 0 and min(sides) >= 0 and (over is None or _beyond(over) >= 0)


def _beyond(margin: dict[str, float]) -> int:
    """+1 where a paired ``margin`` is a gain beyond two standard errors, -1 a loss beyond two, 0 within them."""
    if margin["mean"] - 2 * margin["se"] > 0:
        return 1
    return -1 if margin["mean"] + 2 * margin["se"] < 0 else 0


def stored_result(dm: DistilledDatamodel, name: str = "check.json") -> dict[str, Any] | None:
    """The workspace's stored check (``check/check.json``) or calibration (``check/calibration.json``) where it
    measured the synsets in use; None where there is none, it is unreadable, or it measured another synset."""
    path = dm.ws.path("check", name)
    if not path.exists():
        return None
    try:
        r = load_json(path)
    except Exception:  # an unreadable result says nothing to act on
        return None
    return r if r.get("synset_key") == dm.keys.get("synset") else None


def pending_advice(dm: DistilledDatamodel) -> dict[str, float]:
    """What the workspace's last ``ddm check`` advised and its configuration does not have yet (empty where there is
    no check, or it checked another synset)."""
    r = stored_result(dm)
    if r is None:
        return {}
    out = {}
    for key, value in (r.get("advice") or {}).items():
        stage, field = key.split(".", 1)
        # the temperature of the synsets in use, which the synset stage may have switched on its own
        now = (dm.synset_temperature if key == "distill.head_temperature" and dm.synset is not None
               else getattr(getattr(dm.config, stage, None), field, None))
        if now != value:
            out[key] = value
    return out


def _schedule_term(dm: DistilledDatamodel, targets: Any) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The schedule term of the ``targets``' losses for keep-masks ``[S, K]`` -> ``[S, T]`` (weight 1), or None where
    the trajectory has no checkpoint to draw it from."""
    from ddm.attribution.schedule import schedule_slope
    from ddm.objectives import get

    F = dm.fitted()
    slope = schedule_slope(F.model, F.trajectory, targets.x, targets.y, get("dist2"))
    if slope is None:
        return None
    share = F.groups.sizes().double() / F.groups.sizes().sum()

    def term(keep: torch.Tensor) -> torch.Tensor:
        return ((~keep.bool()).double() @ share).float()[:, None] * slope[None, :, 0]

    return term


def schedule_weight(predicted: torch.Tensor, term: torch.Tensor, actual: torch.Tensor) -> float:
    """The schedule term's weight that puts it on the attribution's scale, from retrains ``actual [S, T]``: per
    target, the least-squares slopes of the retrained losses on the attribution's ``predicted`` losses and on the
    ``term`` together (an intercept beside), and the ratio of their medians over targets (0 where either median is
    not positive: the retrains do not see the term, or not the attribution)."""
    slopes = []
    for t in range(actual.shape[1]):
        X = torch.stack([torch.ones_like(actual[:, t]), predicted[:, t], term[:, t]], 1).double()
        slopes.append(torch.linalg.lstsq(X, actual[:, t].double()[:, None]).solution.flatten()[1:])
    b = torch.stack(slopes).nanmedian(0).values
    b_ddm, b_term = float(b[0]), float(b[1])
    return b_term / b_ddm if b_ddm > 0 and b_term > 0 and np.isfinite(b_term / b_ddm) else 0.0


def _flip(d: dict[str, float]) -> dict[str, float]:
    return {"mean": -d["mean"], "se": d["se"]}


#: where DDM is below the class labels: the lead that lifted the two benchmark models where it was (BENCHMARKS.md, "A
#: tempered cross-entropy in the synsets"; not a default: it cost both selection configurations)
TEMPERATURE_HINT = (". If the model fits its training data with large margins (trained with Adam, or to near-zero "
                    "loss), synsets that carry a tempered cross-entropy ranked far better on the two benchmark models "
                    "where DDM was below the class labels: `ddm distill -w WS --set distill.head_temperature=2 "
                    "--overwrite`, then `ddm check` again (its retrains are reused)")


def _side(margin: dict[str, float]) -> str:
    """Where DDM stands beside a peer, from their paired margin: beyond two standard errors either way, or tied."""
    return {1: "ahead of", -1: "behind", 0: "tied with"}[_beyond(margin)]


def verdict(r: dict[str, Any]) -> list[str]:
    """Plain-language reading of a check's result: against the class-label floor, other classes, reproduction."""
    lines = []
    d, t, m = r["lds"]["DDM"], r["lds"][TRIVIAL], r["margin_over_trivial"]
    if m["mean"] - 2 * m["se"] > 0:
        lines.append(f"DDM ranks the groups better than the class labels alone (LDS {d['mean']:.3f} against the "
                     f"trivial same-class score's {t['mean']:.3f}; margin {m['mean']:+.3f} ± {m['se']:.3f})")
    elif m["mean"] + 2 * m["se"] < 0:
        lines.append(f"DDM ranks the groups WORSE than the class labels alone (LDS {d['mean']:.3f} against the "
                     f"trivial same-class score's {t['mean']:.3f}; margin {m['mean']:+.3f} ± {m['se']:.3f}): on this "
                     "model its rankings say less than the groups' classes do; do not act on them without checking "
                     "(README, 'What to expect': the models where a last-layer method loses)"
                     + ("" if "temperature" in r else TEMPERATURE_HINT))
    else:
        lines.append(f"DDM and the class labels alone cannot be told apart on {r['subsets']} subsets (LDS "
                     f"{d['mean']:.3f} against {t['mean']:.3f}; margin {m['mean']:+.3f} ± {m['se']:.3f}): more "
                     "--subsets give a finer answer"
                     + (TEMPERATURE_HINT if m["mean"] < 0 and "temperature" not in r else ""))
    if r.get("one_per_class") and m["mean"] < 2 * m["se"]:
        lines.append("with one group per class the class labels' score is the target's own class alone: whether a "
                     "subset removes it decides most of a retrain's loss, and a ranking of the other classes that is "
                     "only partly right can rank the subsets below that score's ties (so did the peers on most "
                     "class-level runs measured; BENCHMARKS.md, 'Configurations drawn from a wider space'); the "
                     "other-class LDS below is what a class-level ranking adds")
    for peer, pm in r.get("margin_over_peers", {}).items():
        lines.append(f"beside {peer}: DDM is {_side(pm)} it (LDS margin {pm['mean']:+.3f} ± {pm['se']:.3f})")
    oc = r.get("other_class_lds")
    if oc is not None:
        o = oc["DDM"]
        if o["mean"] - 2 * o["se"] > 0:
            lines.append(f"other classes' groups: ranked (other-class LDS {o['mean']:+.3f} ± {o['se']:.3f}; the "
                         "trivial score gets 0 there)")
        elif o["mean"] + 2 * o["se"] < 0:
            lines.append(f"other classes' groups: ranked the WRONG way round (other-class LDS {o['mean']:+.3f} ± "
                         f"{o['se']:.3f}): read only the ranking within the target's own class")
        else:
            lines.append(f"other classes' groups: not told apart from chance on {r.get('other_class_subsets', '')} "
                         f"subsets (other-class LDS {o['mean']:+.3f} ± {o['se']:.3f}): trust the ranking within the "
                         "target's own class more than across classes; more --other-class-subsets give a finer answer")
        for peer, pm in r.get("other_class_margin_over_peers", {}).items():
            lines.append(f"beside {peer} on other classes' groups: DDM is {_side(pm)} it (other-class LDS "
                         f"{o['mean']:+.3f} against {oc[peer]['mean']:+.3f}; margin {pm['mean']:+.3f} ± "
                         f"{pm['se']:.3f})")
    advised = _damping_verdict(r) + _balance_verdict(r) + _schedule_verdict(r)
    if r.get("temperature", {}).get("recommended"):
        # what --apply takes is the tempered synset below; the rest is refitted on it
        advised = [line.replace("keep it for this workspace with `ddm check --apply`",
                                "let `ddm check --apply` refit it on the tempered synsets below") for line in advised]
    lines += advised + _temperature_verdict(r)
    if r["reproduction_dist1"] > SAME_SEED_TOLERANCE:
        if r.get("retrain"):
            why = (f"your retrain function ({r['retrain']}) did not train the target's network from its theta_0 to "
                   "the same weights: seed its data order, augmentation and dropout as the target's training did "
                   "(and run at the same CPU thread count), then delete the workspace's check/ folder to redo the "
                   "retrains")
        elif r.get("retrain_threads") is None:
            why = ("this workspace does not record the CPU thread count its model was trained with (a trajectory "
                   "handed in, a GPU, or a workspace trained before ddm recorded it), and another count rounds "
                   "differently: run the check at the count the model was trained with (OMP_NUM_THREADS=N ddm "
                   "check ...; cached retrains made at another count are kept: delete the workspace's check/ folder "
                   "to redo them)")
        else:
            why = (f"the retrains ran at the target's {r['retrain_threads']} CPU thread(s), so the difference is "
                   "another device, nondeterministic kernels, or randomness in the model that does not draw from "
                   "torch's global RNG (ddm's loop seeds that one, for dropout, per epoch)")
        lines.append(f"retraining on all the data does not reproduce the target (Dist1 x100 "
                     f"{r['reproduction_dist1']:.2f}, expected 0): every retrain carries that nondeterminism, which "
                     f"blurs these scores; {why}")
    return lines


def _schedule_evidence(s: dict[str, Any]) -> tuple[bool, dict[str, float], str]:
    """(held out, margin, what): the schedule term's margin over DDM on the other-class subsets where the check has
    them (the weight is fitted on the random halves, so these never saw it), else on the halves."""
    held_out = "other_class_margin" in s
    return held_out, s["other_class_margin"] if held_out else s["margin"], "other-class LDS" if held_out else "LDS"


#: a schedule term whose spread over the random halves is above this share of DDM's reorders the ranking rather
#: than correcting it, which the verdict says where its gain is within two standard errors (BENCHMARKS.md, "The
#: class balance, refitted by ddm check": 0.08-0.19 where it fixed the miss, 0.49 where a weight of 545 cost 0.06 LDS)
LARGE_SCHEDULE_SPREAD = 0.25


def schedule_spread(predicted: torch.Tensor, term: torch.Tensor) -> float:
    """How large the weighted schedule term ``term [S, T]`` is beside the prediction it is added to: the median over
    targets of its standard deviation over the subsets over the prediction's."""
    return float((term.double().std(0) / predicted.double().std(0).clamp_min(1e-12)).median())


def schedule_recommended(r: dict[str, Any]) -> bool:
    """Whether a check's result ``r`` advises the schedule term at its fitted weight: a positive weight whose
    other-class gain (on subsets that never saw the weight) is beyond twice its standard error, with no loss of LDS
    beyond twice its standard error; where the check has no other-class subsets, an LDS gain beyond twice its
    standard error (those are the subsets the weight was fitted on). The damping and the class balance are advised
    the same way. (With 50 targets this rule was a point estimate of the mean of the two margins, since the
    weight-decayed ConvNet's other-class gain read +0.196 ± 0.165; with 200 targets it reads +0.642 ± 0.177, and the
    point estimate had advised a term that cost a Fashion-MNIST MLP 0.035 other-class LDS: BENCHMARKS.md, "More
    targets for ddm check".)"""
    s = r["schedule_term"]
    if s["weight"] <= 0:
        return False
    m = s["margin"]
    if "other_class_margin" not in s:
        return bool(m["mean"] - 2 * m["se"] > 0)
    o = s["other_class_margin"]
    return bool(o["mean"] - 2 * o["se"] > 0 and m["mean"] + 2 * m["se"] > 0)


#: a damping margin (LDS on the check's halves) worth more halves where it is within two standard errors but above
#: one: on 16 halves the matrix's damping runs had such margins of +0.04 to +0.10 (a Fashion-MNIST ConvNet, the
#: batch-norm ResNet) and a probe's Fashion-MNIST MLP +0.11, each a gain on retrains the check never saw
#: (BENCHMARKS.md, "The emulation's damping"); below 0.03 a gain is not worth 16 more retrains
CLOSE_MARGIN = 0.03


def _damping_verdict(r: dict[str, Any]) -> list[str]:
    """A line where another damping of the emulation ranks the random halves better (nothing where the configured one
    holds)."""
    d = r.get("damping")
    if d is None:
        return []
    m, setting = d["margin"], f"emulate.damping_scale={d['scale']:g}"
    if not (d["recommended"] or d.get("withdrawn")):
        if d["scale"] == d["configured"] or m["mean"] <= max(m["se"], CLOSE_MARGIN) or r["subsets"] >= 64:
            return []  # nothing worth more retrains (and past 64 halves, more of them are not the answer)
        more = r["subsets"]
        return [f"the damping: {setting} ranks the random halves better by {m['mean']:+.3f} ± {m['se']:.3f}, within "
                f"two standard errors, so not advised: `ddm check --subsets {2 * more}` ({more} more retrains; the "
                "ones made are reused) tells a margin of that size apart (on a Fashion-MNIST MLP 32 halves advised a "
                "damping that 16 did not, and it raised LDS by 0.11 on subsets the check never saw: BENCHMARKS.md)"]
    if d.get("withdrawn"):
        return [f"the damping: {setting} ranks the random halves better (margin {m['mean']:+.3f} ± {m['se']:.3f}) "
                f"but ranks other classes' groups worse (other-class LDS {d['other_class_lds']['mean']:+.3f} "
                f"against {r['other_class_lds']['DDM']['mean']:+.3f}): not advised"]
    return [f"the damping: with the Newton step's damping at {d['scale']:g}x the synset's ({setting}; configured "
            f"{d['configured']:g}) LDS is {d['lds']['mean']:+.3f} instead of {r['lds']['DDM']['mean']:+.3f} (margin "
            f"{m['mean']:+.3f} ± {m['se']:.3f}, on the random halves it was chosen on). Attribute with --set "
            f"{setting}, or keep it for this workspace with `ddm check --apply`"]


def _balance_verdict(r: dict[str, Any]) -> list[str]:
    """A line where another class balance ranks the random halves better (nothing where the configured one holds)."""
    b = r.get("class_balance")
    if b is None or not b["recommended"]:
        return []
    m, setting = b["margin"], f"{b.get('setting', 'emulate.other_class_scale')}={b['scale']:g}"
    return [f"the class balance: with other classes' groups at {b['scale']:g} of their emulated weight ({setting}; "
            f"configured {b['configured']:g}) LDS is {b['lds']['mean']:+.3f} instead of {r['lds']['DDM']['mean']:+.3f} "
            f"(margin {m['mean']:+.3f} ± {m['se']:.3f}, on the random halves it was chosen on; the order within each "
            f"class is unchanged). Attribute with --set {setting}, or keep it for this workspace with "
            "`ddm check --apply`"]


def _temperature_verdict(r: dict[str, Any]) -> list[str]:
    """What the synset distilled at another temperature did beside the one in use (nothing where none was tried)."""
    t = r.get("temperature")
    if t is None:
        return []
    m, setting = t["margin"], f"distill.head_temperature={t['temperature']:g}"
    o, om, ma = t.get("other_class_lds"), t.get("other_class_margin"), t.get("margin_over_advice")
    said = (f"synsets that carry the cross-entropy at temperature {t['temperature']:g} ({setting}; distilled by the "
            f"check) give LDS {t['lds']['mean']:+.3f}, a margin of {m['mean']:+.3f} ± {m['se']:.3f} over the "
            "synsets in use"
            + (f" ({ma['mean']:+.3f} ± {ma['se']:.3f} over them with the advice above)" if ma is not None else "")
            + (f"; other-class LDS {o['mean']:+.3f}, margin {om['mean']:+.3f} ± {om['se']:.3f}" if o is not None
               else ""))
    if t["recommended"]:
        if _beyond(m) <= 0:  # advised for the other classes' gain
            said += (": other classes' groups ranked better beyond two standard errors, the random halves no worse "
                     "beyond two")
        return [said + ". `ddm check --apply` makes them this workspace's synsets (no distillation: the check's are "
                "taken), checks them on the same retrains and keeps the damping and class balance refitted on them "
                "(README, 'A tempered synset, tried')"]
    if _beyond(m) < 0:
        why = "they rank the random halves worse beyond two standard errors"
    elif om is not None and _beyond(om) < 0:
        why = "other classes' groups ranked worse beyond two standard errors"
    elif _beyond(m) == 0 and (om is None or _beyond(om) == 0):
        why = "no gain beyond two standard errors"
    else:
        why = "behind the advice above beyond two standard errors"
    return [said + f": {why}, keep the synsets in use"]


def _schedule_verdict(r: dict[str, Any]) -> list[str]:
    """Whether the schedule term, at the weight fitted on the random halves, ranks better: judged on the other-class
    subsets where there are (the weight never saw them), else on the halves themselves."""
    s = r.get("schedule_term")
    if s is None:
        return []
    held_out, m, what = _schedule_evidence(s)
    if s.get("over", "DDM") == "DDM":
        before = (r["other_class_lds"] if held_out else r["lds"])["DDM"]["mean"]
    else:  # added to the refitted damping or class balance
        before = r["damping" if s["over"] == DAMPING else "class_balance"]["other_class_lds" if held_out
                                                                          else "lds"]["mean"]
    after = (s["other_class_lds"] if held_out else s["lds"])["mean"]
    setting = f"emulate.schedule_weight={s['weight']:.3g}"
    if s["configured"] > 0:
        return [f"schedule term: weight {s['configured']:.3g} configured; these retrains fit {s['weight']:.3g} "
                f"({what} {after:+.3f} against {before:+.3f} with the configured one)"]
    if s["recommended"]:
        return [f"a retrain without part of the data also takes fewer steps, and here that shows: with the schedule "
                f"term ({setting}, fitted on the random halves) {what} is {after:+.3f} instead of {before:+.3f} "
                f"(margin {m['mean']:+.3f} ± {m['se']:.3f}" + (", on subsets the weight was not fitted on" if held_out
                                                               else ", on the subsets it was fitted on")
                + f"; LDS {s['lds']['mean']:+.3f}, margin {s['margin']['mean']:+.3f} ± {s['margin']['se']:.3f})"
                + f". Attribute with --set {setting}, or keep it for this workspace with "
                "`ddm check --apply` (README, 'The schedule term')"]
    if s["weight"] == 0:
        return ["a retrain's fewer steps do not show in these retrains (the schedule term's fitted weight is 0): "
                "leave emulate.schedule_weight at 0"]
    h = s["margin"]
    if held_out and m["mean"] > 0 and h["mean"] + 2 * h["se"] <= 0:  # other classes better, the halves worse
        return [f"the schedule term at the fitted weight {s['weight']:.3g} ranks other classes' groups better "
                f"({what} {after:+.3f} against {before:+.3f}, margin {m['mean']:+.3f} ± {m['se']:.3f}) but the random "
                f"halves worse (LDS {s['lds']['mean']:+.3f}, margin {h['mean']:+.3f} ± {h['se']:.3f}, a loss beyond "
                "two standard errors): leave emulate.schedule_weight at 0"]
    if m["mean"] > 0:  # a gain, but within two standard errors
        large = held_out and s.get("spread", 0.0) > LARGE_SCHEDULE_SPREAD
        return [f"the schedule term at the fitted weight {s['weight']:.3g} ranks better only within two standard "
                f"errors ({what} {after:+.3f} against {before:+.3f}, margin {m['mean']:+.3f} ± {m['se']:.3f})"
                + (f" and would reorder the ranking (its spread is {s['spread']:.2f} of DDM's)" if large else "")
                + ": leave emulate.schedule_weight at 0 (more --other-class-subsets give a firmer answer)"]
    return [f"the schedule term (a retrain's fewer steps) does not rank better here ({what} {after:+.3f} against "
            f"{before:+.3f} at the fitted weight {s['weight']:.3g}): leave emulate.schedule_weight at 0"]


def verify_unlearning(dm: DistilledDatamodel, data: Any, groups: list[int], unlearned: torch.nn.Module, orders: int,
                      synset: str = "groups",
                      retrain: Retrainer | Callable[..., torch.nn.Module | None] | None = None,
                      first_step: torch.nn.Module | None = None, classes: list[int] | None = None) -> dict[str, Any]:
    """The unlearned model against exact retraining without the same ``groups`` (of the ``synset``: ``groups`` or
    ``classes``) in ``orders`` data orders (the target's own, then others): test accuracy, accuracy on the removed
    training samples, and top-1 agreement on the test split of the unlearned model and of the target with each
    retrain (with two or more orders, also of the retrains with each other: retraining's own spread). Retrains are
    cached under ``<workspace>/check/`` and resume after a kill. ``retrain``: as :func:`check`'s. ``first_step``: the
    unlearning's first step where its check redid it with more damping (``dm.last_unlearned_first``), scored on the
    same retrains (``first_step`` in the result); ``classes``: classes whose test accuracy is compared one by one
    (the ones the unlearning check found collapsed: does retraining keep them?)."""
    from ddm.config import fingerprint
    from ddm.evaluation.retrain import RetrainCache

    if orders < 1:
        raise ConfigError(f"verification needs at least one data order, got {orders}")
    retrainer = retrainer_for(dm, retrain, orders)
    F = dm.fitted()
    part = dm.class_groups if synset == "classes" else F.groups
    if part is None:
        raise ConfigError(f"the workspace has no {synset} synset to verify")
    key = fingerprint(dm.keys["train"], dm.keys["groups-class" if synset == "classes" else "groups"],
                      data.test.fingerprint(), *folder_key_parts(retrainer))
    cache = RetrainCache(dm.ws.path("check", f"unlearn-retrain-{key}"), F.model, F.trajectory.checkpoint(0), data.train,
                         part, dm.config.train, torch.cat([data.test.x, data.train.x]),
                         device=devices.of(F.model), threads=dm.training_threads(), retrain=retrainer)
    removed = torch.cat([part.members(k) for k in groups])
    n_test = len(data.test)
    y_test, y_removed = data.test.y, data.train.y[removed]

    def predict(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        return devices.predict(model, x).argmax(1)

    def acc(pred: torch.Tensor, y: torch.Tensor) -> float:
        return float((pred == y).float().mean())

    seeds: list[int | None] = [None] + [1000 + i for i in range(orders - 1)]
    exact = [cache.get(groups, seed) for seed in seeds]
    ex_test = [e[:n_test].argmax(1) for e in exact]
    ex_removed = [e[n_test:][removed].argmax(1) for e in exact]
    un_test, target_test = predict(unlearned, data.test.x), predict(F.model, data.test.x)
    un_removed, target_removed = predict(unlearned, data.train.x[removed]), predict(F.model, data.train.x[removed])
    out: dict[str, Any] = {
        "groups": sorted(groups), "synset": synset, "orders": orders,
        "exact": {"test_accuracy": [acc(e, y_test) for e in ex_test],
                  "removed_accuracy": [acc(e, y_removed) for e in ex_removed]},
        "unlearned": {"test_accuracy": acc(un_test, y_test), "removed_accuracy": acc(un_removed, y_removed),
                      "test_agreement": [acc(un_test, e) for e in ex_test]},
        "target": {"test_accuracy": acc(target_test, y_test), "removed_accuracy": acc(target_removed, y_removed),
                   "test_agreement": [acc(target_test, e) for e in ex_test]}}
    if orders > 1:
        out["exact"]["test_agreement_between_orders"] = [acc(ex_test[0], e) for e in ex_test[1:]]
    exact_mean = float(np.mean(out["exact"]["test_accuracy"]))
    out["test_gap_points"] = 100 * (out["unlearned"]["test_accuracy"] - exact_mean)
    if first_step is not None:
        first_test = predict(first_step, data.test.x)
        out["first_step"] = {"test_accuracy": acc(first_test, y_test),
                             "removed_accuracy": acc(predict(first_step, data.train.x[removed]), y_removed),
                             "test_agreement": [acc(first_test, e) for e in ex_test]}
        out["first_step"]["test_gap_points"] = 100 * (out["first_step"]["test_accuracy"] - exact_mean)
    if classes:
        def per_class(pred: torch.Tensor) -> dict[str, float]:
            return {str(c): acc(pred[y_test == c], y_test[y_test == c]) for c in classes if (y_test == c).any()}

        out["classes"] = {"exact": [per_class(e) for e in ex_test], "unlearned": per_class(un_test),
                          "target": per_class(target_test)}
        if first_step is not None:
            out["classes"]["first_step"] = per_class(first_test)
    return out
