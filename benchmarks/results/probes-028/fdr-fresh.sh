#!/usr/bin/env bash
# The false-discovery-rate cut's fresh test (probes-028), written before its run.
#
# The first rule (fdr-rule.md) failed: the rate it chose on the ConvNets' selection seed, q = 0.5, flagged 8.4 % of
# clean data on the held-out MLPs (37.4 % on one run). Read off those held-out runs afterwards, q = 0.2 is the
# loosest rate that passes every part of that rule (benchmarks/diagnosis_fdr_rule.py: clean 0.9 % / 1.9 % against
# the threshold's 2.8 % / 10.9 %, pooled recall 27.8 % against 40.8 %, precision 83.4 % against 77.1 %). Since those
# runs chose it, it is tested here on runs that chose nothing: seeds 4-6 of the four configurations, and of two MLP
# configurations with many small groups (fmnist-mlp-K300, digits-mlp-K200), clean and with 10 % flipped labels.
#
# BH at q = 0.2 becomes the default of the loss objective (where the score has a standard error) if, on these runs
# against the threshold 0.1 (`diagnosis_fdr_rule.py --fdr 0.2`, families convnets, mlps, many-groups):
#   (a) the mean clean flagged fraction is under 5 % in every family;
#   (b) pooled recall of flipped labels is at least 60 % of the threshold's, and something is flagged on at least
#       90 % of the noisy runs;
#   (c) pooled precision (over the runs that flag) is at most 5 points below the threshold's;
#   (d) the pooled clean flagged fraction is below the threshold's.
# Otherwise the threshold stays the default and --fdr an option.
set -euo pipefail
cd "$(dirname "$0")/../../.."
PY=${PY:-.venv/bin/python}
OUT=benchmarks/results/probes-028
for d in digits-convnet-d2,fmnist-convnet fmnist-mlp,digits-mlp fmnist-mlp-K300,digits-mlp-K200; do
  name=$(echo "$d" | tr , -)
  $PY benchmarks/diagnosis_threshold.py --root runs/p28/diagnosis --datasets "$d" --select-seed 4 --seeds 4,5,6 \
    --fdr --out "$OUT/fdr-fresh-$name" > /dev/null
done
$PY benchmarks/diagnosis_fdr_rule.py --fdr 0.2 convnets=$OUT/fdr-fresh-digits-convnet-d2-fmnist-convnet.json \
  mlps=$OUT/fdr-fresh-fmnist-mlp-digits-mlp.json many-groups=$OUT/fdr-fresh-fmnist-mlp-K300-digits-mlp-K200.json \
  | tee $OUT/fdr-fresh.md
