#!/usr/bin/env bash
# The rest of large-n.sh after its `ddm check --peers if-explicit,tracin` was stopped: TracIn (exact inner products of
# the full network's per-sample gradients over the 21 recorded checkpoints, 60,000 training samples, 200 targets) had
# run for over 40 minutes on 2 cores, sharing them with other work, without finishing. The check is run again with
# last-layer influence only (its scores and the 16 random halves' retrains are reused from the cache), then the
# unlearning and diagnosis steps of large-n.sh.
set -u
ddm=${DDM:-.venv/bin/ddm}
out=$(dirname "$0")
W=runs/p26/f-mlp-60k
$ddm check -w $W -q --peers if-explicit > $out/large-n-check.txt 2>&1
$ddm unlearn -w $W -q --groups 12,47,73,95 --verify 3 > $out/large-n-unlearn.txt 2>&1
$ddm unlearn -w $W -q --groups 4 --classes --verify 1 > $out/large-n-unlearn-class.txt 2>&1
$ddm diagnose -w $W -q > $out/large-n-diagnose.txt 2>&1
