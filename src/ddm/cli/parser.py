"""The ``ddm`` command line's arguments: one subparser per command, with the options they share."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping

from ddm import __version__

#: ``ddm run --calibrate auto``: the most seconds the calibration's retrains are estimated at for it to run them by
#: itself, on any model and on one that fits its training data loosely (where the default damping is least reliable)
CALIBRATE_BUDGET, CALIBRATE_BUDGET_LOOSE = 60, 300
#: ``ddm run --calibrate``'s default (the test suite sets ``never`` for the runs that do not ask for it)
CALIBRATE_DEFAULT = "auto"

DESCRIPTION = """``ddm``: the Distilled Datamodel from the shell.

    ddm run        all offline stages, then attribute a few test samples and the Table 4 check
    ddm train      train the target model and record its trajectory
    ddm cluster    split the training data into groups
    ddm distill    learn the synset (head matching by default; --recipe paper: reverse gradient matching)
    ddm attribute  attribution matrix of an objective on test samples
    ddm unlearn    remove chosen groups (relabelled fine-tuning; --method step: the synsets), save the checkpoint
    ddm diagnose   rank groups by usefulness for validation data: the low-quality ones first
    ddm report     one self-contained HTML page of a workspace: images, heatmaps, diagnosis
    ddm evaluate   measure against exact retraining: Table 1-4 analogs, LDS, noise floor, cost
    ddm check      is DDM right on this workspace's model? a few exact retrains, scored against the class labels
    ddm info       what a workspace holds; config fields; presets
"""

EPILOG = """examples:
  ddm run -w runs/demo --preset demo
  ddm run -w runs/fmnist --preset paper --set data.name=fashion-mnist --set data.train_size=10000
  ddm attribute -w runs/demo --targets 0:20 --objective dist1 --top-k 3
  ddm attribute -w runs/demo --targets 0:360 --objective accuracy
  ddm unlearn -w runs/demo --groups 3,17
  ddm check -w runs/demo
  ddm info --config-help
"""


def _count(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer of at least ``minimum``, with an error that says so."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    parse.__name__ = "count"
    return parse


def _skip_or_count(minimum: int) -> Callable[[str], int]:
    """An argparse type: 0 (skip) or an integer of at least ``minimum`` (a Spearman correlation over fewer retrained
    subsets says nothing: over one it is undefined, over two or three it takes two or three values)."""
    count = _count(0)

    def parse(text: str) -> int:
        value = count(text)
        if 0 < value < minimum:
            raise argparse.ArgumentTypeError(f"give 0 (skip) or at least {minimum}, got {value}")
        return value

    parse.__name__ = "count"
    return parse


def _common(p: argparse.ArgumentParser, workspace_default: str | None = "runs/default") -> None:
    p.add_argument("-w", "--workspace", default=workspace_default,
                   help="run folder holding every artifact (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of the readable summary")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.add_argument("-v", "--verbose", action="store_true", help="log what each stage does")
    p.add_argument("--device", default=None, metavar="DEVICE",
                   help="where to compute: auto (CUDA when PyTorch sees one, else the CPU; the default), cpu, cuda or "
                        "cuda:N. Results are stored on the CPU, so a workspace made on a GPU opens anywhere; the "
                        "head recipe (the default) runs on a GPU, the fine-tuning and paper recipes on the CPU only")


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default=None,
                   help="starting configuration: demo (default; minutes on a CPU), paper, tiny (seconds)")
    p.add_argument("--config", default=None, help="JSON file of a RunConfig (as written to <workspace>/config.json)")
    p.add_argument("--recipe", default=None, metavar="NAME",
                   help="distillation recipe applied on top of the preset, before any --set: head (the "
                        "default, chosen on selection configurations in BENCHMARKS.md), head-noise, block (a "
                        "Newton step over the last block too; better on the digits ResNet, worse elsewhere), "
                        "local-free "
                        "(the previous default), paper (the paper-faithful reverse matching), ...; `ddm info` "
                        "lists them all")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="STAGE.FIELD=VALUE",
                   help="override one field, e.g. --set train.epochs=5 (repeatable; see `ddm info --config-help`)")
    p.add_argument("--dataset", default=None, help="shortcut for --set data.name=NAME (digits, fashion-mnist, mnist, "
                   "cifar10, cifar100, tinyimagenet: the unpacked tiny-imagenet-200 folder in --data-dir; npz: "
                   "your own arrays, --data-dir FILE.npz)")
    p.add_argument("--data-dir", default=None, help="shortcut for --set data.data_dir=DIR (for --dataset npz: the "
                   ".npz file, holding X and y, optionally X_test, y_test and class_names)")
    p.add_argument("--overwrite", action="store_true",
                   help="recompute stages stored with another configuration instead of stopping with an error")


def _model_arg(p: argparse.ArgumentParser, stored: bool) -> None:
    p.add_argument("--model", default=None, metavar="MODULE:FACTORY",
                   help="your own model: an import path whose factory returns a torch.nn.Module (called with "
                        "num_classes and/or image_shape if it takes them); stored in the workspace" +
                        (", so later commands need no flag; opening the workspace imports that module" if not stored
                         else "; needed here only to rebuild a model the workspace cannot (given: it must match)"))


def _retrain_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--retrain", default=None, metavar="MODULE:FUNCTION",
                   help="the training loop exact retrains run with, for a workspace whose trajectory was handed in "
                        "from your own loop (fit(..., trajectory=)): an import path to fn(model, train[, seed]) that "
                        "trains the model it is given (the target's network at theta_0) on train (.x, .y: the "
                        "training split without the removed groups) as the target was trained, and returns it; seed "
                        "is None for the target's data order, an integer for another. Retrains are cached under the "
                        "path (default: ddm's own loop with the workspace's train.* settings)")


def _targets_args(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument("--targets", default=default,
                   help="test samples: a range START:STOP or a comma list of indices (default: %(default)s)")
    p.add_argument("--objective", default="dist2",
                   help="dist2 (loss increase: the groups that support each prediction), dist1 (output change), "
                        "dist3 (least influence), accuracy, precision, recall, f1 (over the targets as a set) "
                        "(default: %(default)s: on the benchmarks its top group raises the target's loss as much "
                        "as the peers' picks, while dist1's top group moves the output no more than a random group "
                        "on digits; see BENCHMARKS.md)")
    p.add_argument("--hierarchical", action="store_true",
                   help="class-level attribution first, then groups inside the top classes (Sec. 3.3)")
    p.add_argument("--top-k", type=_count(1), default=3, help="groups listed per target (default: %(default)s)")


def build_parser(commands: Mapping[str, Callable[[argparse.Namespace], int]]) -> argparse.ArgumentParser:
    """The ``ddm`` argument parser; ``commands`` maps each command's name to the function that runs it."""
    parser = argparse.ArgumentParser(prog="ddm", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"ddm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("run", help="all stages on a dataset, then attribution of test samples and the Table 4 check",
                       description="Train (recording the trajectory), group, distill, calibrate on a few exact "
                                   "retrains where they are cheap (--calibrate), then attribute test samples and "
                                   "report the Table 4 check. Finished stages are reused.")
    _common(p)
    _config_args(p)
    _model_arg(p, False)
    _targets_args(p, "0:5")
    p.add_argument("--calibrate", choices=("auto", "always", "never"), default=CALIBRATE_DEFAULT,
                   help="run `ddm check`'s 32 exact retrains on test targets and subsets of their own and keep "
                        "its advice (the damping, class balance, schedule term, tempered synsets) before "
                        f"attributing: auto (the default) does it where they are estimated at under {CALIBRATE_BUDGET} "
                        f"s, or {CALIBRATE_BUDGET_LOOSE} s for a model that fits its training data loosely (training "
                        "cross-entropy above half a uniform guess's, where the default damping is least reliable), "
                        "once per workspace and not for a model at chance; always; never. Written to "
                        "check/calibration.json; a later `ddm check` scores the result on targets and subsets the "
                        "calibration did not choose on")
    p.set_defaults(func=commands["run"])

    for name, until, text in (("train", "train", "train the target model and record theta_0..theta_tau"),
                              ("cluster", "groups", "train if needed, then split the training data into K groups"),
                              ("distill", "synset", "train and group if needed, then learn the synset")):
        p = sub.add_parser(name, help=text, description=text.capitalize() + ". Finished stages are reused.")
        _common(p)
        _config_args(p)
        _model_arg(p, False)
        p.set_defaults(func=commands["stage"], until=until)

    p = sub.add_parser("attribute", help="attribution matrix of an objective on test samples",
                       description="Emulate retraining without random sets of groups with their synsets (head "
                                   "synsets, the default: one Newton step on the last layer each, well under a "
                                   "second; other recipes: fine-tuning), and regress the objective on the "
                                   "perturbations (Eq. 7-8). Sign: the listed score is the objective's ranking "
                                   "(see 'score meaning' in the output).")
    _common(p)
    _model_arg(p, True)
    _targets_args(p, "0:5")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="emulate.FIELD=VALUE",
                   help="override an emulate.* field for this attribution (repeatable)")
    p.add_argument("--targets-file", default=None, metavar="PATH",
                   help="attribute these inputs instead of test rows: .npy (inputs), .npz or .safetensors ('x' and "
                        "optional 'y'), an image, or a folder of images. Float arrays are model inputs (normalised "
                        "like the training data); uint8 arrays and image files are raw pixels; for feature vectors "
                        "(--dataset npz of [N, D] arrays) rows of raw features, as in the data file. Without labels "
                        "each input is asked about its predicted class. Ids are the file's rows (a folder: sorted "
                        "names)")
    p.add_argument("--name", default=None, help="save under attributions/NAME (default: the objective)")
    p.set_defaults(func=commands["attribute"])

    p = sub.add_parser("unlearn", help="remove groups' influence (relabelled fine-tuning, the synsets' step, or a "
                                       "retrain)",
                       description="Remove the given groups from the trained model and save the checkpoint under "
                                   "unlearned/NAME: by default one epoch of fine-tuning with the removed samples "
                                   "relabelled by their nearest kept samples where those agree, and taught their "
                                   "10 nearest kept samples' label shares where those are split (--method relabel); "
                                   "--method step uses the synsets alone (head synsets: the kept data's Newton step "
                                   "on the last layer; other recipes: fine-tuning on the groups' synsets) and warns "
                                   "when the kept groups' synthetic images lose accuracy (a damaged model); --method "
                                   "exact retrains. Reports accuracy before and after. Every call starts "
                                   "from the trained model: for removals asked for over time, pass every group "
                                   "removed so far (--groups 3, later --groups 3,17).")
    _common(p)
    _model_arg(p, True)
    p.add_argument("--groups", required=True, help="comma list or START:STOP range of group indices")
    p.add_argument("--classes", action="store_true",
                   help="the indices are classes (--method step uses the class-level synset, built on first use; "
                        "relabel and exact only read the data)")
    p.add_argument("--name", default=None, help="folder name under unlearned/")
    p.add_argument("--verify", type=_count(0), default=0, metavar="ORDERS",
                   help="check the unlearned model against exact retraining: retrain from theta_0 without the same "
                        "groups in ORDERS data orders (the target's own first; ORDERS trainings as long as the "
                        "target's, cached under <workspace>/check/) and compare test accuracy, accuracy on the "
                        "removed samples and agreement; 2 or more also show retraining's own spread; where the "
                        "unlearned model lands over 3 points from it, the other method (step or relabel) is scored "
                        "against the same retrains and saved too (default: 0, off)")
    p.add_argument("--method", choices=("relabel", "step", "exact"), default=None,
                   help="relabel (the default; step where the workspace's trajectory was handed in from another loop,"
                        " which ddm cannot repeat, and where the model's training cross-entropy is above 0.3 of a "
                        "uniform guess's, ddm.unlearning.STEP_FIT, and the removal thins a class, as its retrain "
                        "loses that class and the step follows; --method relabel given explicitly runs the epoch "
                        "there too): one epoch of the training's optimizer over the kept data and the removed samples"
                        " of which 4 of the 5 nearest kept samples (raw inputs) name the same other class, taught "
                        "that class (reads the training data; 1 / train.epochs of a retrain; on a model still "
                        "learning when its training stopped one more epoch trains it further than a retrain would: "
                        "where the kept data's accuracy rises by over 5 points the synsets' step is used instead, "
                        "with a warning; --method relabel given explicitly replays the epoch from the checkpoint an "
                        "epoch before theta_tau there); step: the synsets' Newton step on the"
                        " last layer (the distilled datamodel's unlearning, no training data read; about a second on "
                        "the demo: it decomposes the last layer's curvature without the removed groups again, about "
                        "15 s for a head of 5,000 parameters on 2 cores; stays above a retrain where a removal "
                        "takes modes of a class); exact: retrain from theta_0 without the groups (the target's data "
                        "order; ddm's loop, or --retrain's) and save that model. BENCHMARKS.md, \"Relabelled "
                        "fine-tuning\"")
    _retrain_arg(p)
    p.add_argument("--set", action="append", default=[], metavar="emulate.unlearn_FIELD=VALUE",
                   help="a setting of the synsets' step (--method step) for this call only (repeatable): "
                        "emulate.unlearn_damping (larger: "
                        "a shorter step), emulate.unlearn_rewind, emulate.unlearn_backoff, "
                        "emulate.unlearn_class_drop, emulate.unlearn_curvature_damping, emulate.unlearn_prior_shift "
                        "(1: a class that keeps a fraction r of its data gets log r on its bias; off by default); "
                        "the workspace's other "
                        "settings cannot change here")
    p.set_defaults(func=commands["unlearn"])

    p = sub.add_parser("diagnose", help="rank training groups by usefulness for validation data (low quality first)",
                       description="Predict, for every group, how much the validation objective would worsen if "
                                   "the group were removed (quality; negative = removing it is predicted to help). "
                                   "Lists the lowest-quality groups with their sample ids and flags those below "
                                   "--threshold. Scores and flags are saved to diagnosis/METHOD-OBJECTIVE.json.")
    _common(p)
    _model_arg(p, True)
    p.add_argument("--validation", default=None, metavar="START:STOP|i,j,...",
                   help="test samples that stand for the validation data (default: the first half of the test split)")
    p.add_argument("--objective", default="loss", choices=["loss", "accuracy"],
                   help="validation loss (sum of cross-entropy) or accuracy (default: %(default)s)")
    p.add_argument("--method", default="ddm",
                   help="ddm, or a peer method summed per group: if-explicit, if-cg, if-lissa, fastif, arnoldi, ekfac, "
                        "tracin, trak (needs ddm[peers]; objective loss only) (default: %(default)s)")
    p.add_argument("--fdr", type=float, default=None, metavar="Q",
                   help="flag groups that hurt (quality < 0) and whose bounded score is at or under the "
                        "Benjamini-Hochberg cut at false discovery rate Q. For the loss the score is the normal CDF "
                        "of the quality over its standard error across the validation samples, a one-sided p-value "
                        "(0.5 = no evidence; near 0 = the validation samples agree that removing it helps), and the "
                        "cut tightens as the groups grow in number. The default for the loss (0.2 since 0.25): on "
                        "18 fresh runs (two ConvNets, two MLPs, two MLPs with 200-300 groups) it flagged 1.1%% of "
                        "clean training data where the threshold 0.1 flagged 9.1%%, and found 26%% of 10%% flipped "
                        "labels at 69%% precision (the threshold: 37%% at 56%%); on a clean MLP with 1,000 groups 16 "
                        "flags where the threshold gave 171 (BENCHMARKS.md, \"A false-discovery-rate cut for `ddm "
                        "diagnose`\")")
    p.add_argument("--threshold", type=float, default=None,
                   help="instead of --fdr, flag groups that hurt (quality < 0) and whose bounded score is below this. "
                        "A fixed threshold flags about that share of the groups whose removal changes nothing, so "
                        "its flags grow with the number of groups. The default for accuracy (1e-5), whose score is the "
                        "normal CDF of the group's robust z-score among the groups, and for the loss with under 10 "
                        "validation samples (0.1); the loss's default before 0.25 was 0.1. Raise it (e.g. 0.5) to "
                        "see more candidates, and check what you act on with --verify")
    p.add_argument("--top-k", type=_count(1), default=10, help="groups listed (default: %(default)s)")
    p.add_argument("--verify", type=_count(0), default=0, metavar="ORDERS",
                   help="check the flags by exact retraining: retrain from theta_0 with and without all flagged "
                        "groups in ORDERS data orders (2 x ORDERS trainings as long as the target's, cached in the "
                        "workspace) and report how the validation objective changed against the prediction, and "
                        "how it changed on the rest of the test split, which chose no flag (trust that one: the "
                        "validation samples' own change leans toward helping); retraining's own noise is large for "
                        "one group, so 3 or more orders (default: 0, off)")
    _retrain_arg(p)
    p.set_defaults(func=commands["diagnose"])

    p = sub.add_parser("report", help="one self-contained HTML page of a workspace (images, heatmaps, diagnosis)",
                       description="Write <workspace>/report.html (or --out): each target image beside the groups "
                                   "that most support and oppose its prediction (member images, synthetic images, "
                                   "class, size, score), a target x group heatmap, the class-level view, the "
                                   "diagnosis list with images, the synset health checks and grid, and the run's "
                                   "configuration and timings. Figures are embedded: the file opens anywhere. "
                                   "Needs ddm[report] (matplotlib, jinja2).")
    _common(p)
    _model_arg(p, True)
    p.add_argument("--targets", default="0:8", help="test samples shown: START:STOP or i,j,... (default: %(default)s)")
    p.add_argument("--objective", default="dist2", help="objective of the attribution (default: %(default)s)")
    p.add_argument("--top-k", type=_count(1), default=3,
                   help="supporting and opposing groups per target (default: %(default)s)")
    p.add_argument("--out", default=None, help="output file (default: <workspace>/report.html)")
    p.set_defaults(func=commands["report"])

    p = sub.add_parser("evaluate", help="measure DDM against exact retraining (Table 1, LDS, noise floor, cost)",
                       description="For each seed: build DDM-full, DDM-match and DDM w/o cluster, let every method "
                                   "pick a group per test target, retrain without it from theta_0 and report Avgdist "
                                   "(Eq. 10); group-level LDS over random half subsets beside a trivial same-class "
                                   "score, and other-class LDS; noise floor; cost. Writes evaluation.json and "
                                   "evaluation.md in the workspace. Retrains are cached and resume after a kill.")
    _common(p, workspace_default="runs/eval")
    _config_args(p)
    p.add_argument("--seeds", default="0,1,2", help="comma list of seeds (default: %(default)s)")
    p.add_argument("--num-targets", type=_count(1), default=20, help="reported test targets (default: %(default)s)")
    p.add_argument("--lds-subsets", type=_skip_or_count(4), default=50,
                   help="random subsets for LDS, 0 to skip, else at least 4 (default: %(default)s)")
    p.add_argument("--other-class-subsets", type=_skip_or_count(4), default=5,
                   help="per target class, subsets that keep that class whole and half of the other groups: the "
                        "other-class LDS, which a score marking only the target's own class cannot pass; 0 to "
                        "skip, else at least 4 (default: %(default)s)")
    p.add_argument("--model", default=None, metavar="MODULE:FACTORY",
                   help="your own model instead of the configured one: an import path whose factory returns a "
                        "torch.nn.Module (called with num_classes and/or image_shape if it takes them), called "
                        "under each seed's model.seed for its initial weights; the training loop is ddm's "
                        "(train.* settings)")
    p.add_argument("--logo", action="store_true", help="also retrain leave-one-group-out for all K groups")
    p.add_argument("--noise-seeds", type=_count(0), default=2, help="other-seed retrains for the noise floor")
    p.add_argument("--tune", default="", metavar="M1,M2,...",
                   help="fine-tune lr multipliers (x the training rate) to choose from on validation targets, "
                        "e.g. 0.01,0.03,0.1,0.3,1 (default: none: emulate.finetune_scale)")
    p.add_argument("--plots", action="store_true", help="save synset grids and class heatmaps (needs ddm[plots])")
    p.add_argument("--peers", default="", metavar="M1,M2,...|all",
                   help="peer methods for the Table 2 analog (needs ddm[peers]): "
                        "if-explicit, if-cg, if-lissa, fastif, arnoldi, ekfac, kronfluence (needs "
                        "ddm[kronfluence]), tracin, trak, or all (default: none)")
    p.add_argument("--diagnose", action="store_true",
                   help="Table 3 analog (remove the least useful data, retrain) and label-noise detection "
                        "against peers' self-influence and cleanlab (needs ddm[peers])")
    p.add_argument("--scaling", default=None, metavar="SIZES:C_LIST",
                   help="instead of the protocol, measure cost vs training size and clusters per class, "
                        "e.g. 400,800,all:2,5,10 (writes scaling.json/.md)")
    p.add_argument("--ablation", default=None, metavar="V1,V2,...|all",
                   help="instead of the protocol, score DDM design variants on the retrains the protocol "
                        "cached in this workspace (run it first with the same settings): the recipes (head, "
                        "head-noise, block, paper, match, reverse-free, local-hard, local-soft, local-free, "
                        "local-free-ipc5), local-free-linear, "
                        "local-free-noise, local-free-ipc5-linear, first-order, or all; --tune picks each "
                        "variant's fine-tune rate on validation targets, --peers adds reference rows "
                        "(writes ablation.json/.md)")
    p.set_defaults(func=commands["evaluate"])

    p = sub.add_parser("check", help="is DDM right on this workspace's model? a few exact retrains",
                       description="Retrain the workspace's model from its theta_0, with its schedule, on random "
                                   "halves of the groups (--subsets), on subsets that keep a few classes whole "
                                   "(--other-classes) and half of the other groups (--other-class-subsets), and once "
                                   "on all the data; score DDM's predicted test losses against the retrained ones "
                                   "(group-level LDS over --num-targets test samples) beside a trivial score that only"
                                   " marks the target's own class, and say whether DDM beats it and ranks other "
                                   "classes' groups. On the random halves it also refits the Newton step's damping "
                                   "(emulate.damping_scale), the class balance (emulate.other_class_scale) and the "
                                   "schedule term (emulate.schedule_weight), distils a second synset with a tempered "
                                   "cross-entropy (--try-temperature) and advises what ranks better "
                                   "beyond two standard errors (--apply keeps it; more --subsets or --num-targets "
                                   "tell smaller gains apart). Costs subsets + "
                                   "other-class-subsets + 1 trainings (each on about "
                                   "half the data), cached under <workspace>/check/ and resumed after a kill; writes "
                                   "check/check.json. The way to see whether DDM holds on your model before acting on "
                                   "its rankings or unlearning.")
    _common(p)
    _model_arg(p, True)
    _retrain_arg(p)
    p.add_argument("--num-targets", type=_count(2), default=200,
                   help="test samples scored (a fixed random choice, all of them where the test split is smaller): "
                        "more cost no retraining, only an emulation per refitted setting (and each --peers method "
                        "more time), and narrow the standard errors the advice is decided on (default: "
                        "%(default)s)")
    p.add_argument("--subsets", type=_count(4), default=16,
                   help="random halves of the groups, each one retraining (default: %(default)s)")
    p.add_argument("--other-class-subsets", type=_skip_or_count(4), default=15,
                   help="subsets that keep the checked classes whole and half of the other groups, each one "
                        "retraining: the other-class LDS on those classes' targets (0: skip; else at least 4) "
                        "(default: %(default)s)")
    p.add_argument("--other-classes", type=_count(1), default=3,
                   help="classes kept whole (those with the most targets), on whose targets the other-class LDS is "
                        "measured (default: %(default)s)")
    p.add_argument("--peers", default="", metavar="M1,M2,...",
                   help="peer methods scored beside DDM on the same retrains (needs ddm[peers]): if-explicit "
                        "(last-layer influence), ekfac (EK-FAC influence over every Linear layer), kronfluence "
                        "(EK-FAC over every Linear and Conv2d layer; needs ddm[kronfluence]), tracin, trak, ... "
                        "(default: none)")
    p.add_argument("--try-temperature", type=float, default=2.0, metavar="T",
                   help="also distil the synsets with the cross-entropy at temperature T (distill.head_temperature; "
                        "one more distillation, cached under <workspace>/check/, no retrain) and score them on the "
                        "same retrains: advised where they rank the random halves or other classes' groups better "
                        "beyond two standard errors than the synsets in use with the rest of the advice, and neither "
                        "worse beyond two. On the benchmarks it lifted the models fitted with the largest margins "
                        "(AlexNet, a batch-norm ResNet) and cost others (BENCHMARKS.md, 'A tempered cross-entropy'); "
                        "0 skips it. Where the synsets switched to a temperature on their own, the plain ones are "
                        "tried instead (default: %(default)g)")
    p.add_argument("--apply", action="store_true",
                   help="keep what the check advises (emulate.damping_scale, emulate.other_class_scale, "
                        "emulate.schedule_weight, or distill.head_temperature) as this "
                        "workspace's settings: written into its config.json, used by every later attribute and "
                        "report (diagnose: the schedule weight; it keeps its own class balance); tempered synsets "
                        "the check distilled replace the workspace's (retrains "
                        "are cached, so applying after a check costs seconds; a later `ddm run` on the workspace "
                        "keeps it only if given the same --set)")
    p.set_defaults(func=commands["check"])

    p = sub.add_parser("info", help="what a workspace holds; config fields; presets")
    _common(p, workspace_default=None)
    p.add_argument("--config-help", action="store_true", help="list every config field with its default and meaning")
    p.set_defaults(func=commands["info"])
    return parser


# ---- helpers ---------------------------------------------------------------------------------
