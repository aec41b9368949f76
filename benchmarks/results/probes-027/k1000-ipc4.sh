#!/usr/bin/env bash
# After k1000.sh: the same workspace's synsets matched with 4 images per group and no 16-image matching
# (distill.ipc_grow=4), on a copy with the check's retrains copied in; the attribution reads the groups' own gradients
# either way, so this asks what the 16-image matching costs and what it changes there. Measured once, used for no choice.
set -u
ddm=${DDM:-.venv/bin/ddm}
out=$(dirname "$0")
W=runs/p27/f-mlp-K1000
C=runs/p27/f-mlp-K1000-ipc4
rm -rf $C && mkdir -p $C/check && cp -a $W/config.json $W/train $W/groups $C/ && cp -a $W/check/retrain $C/check/
/usr/bin/time -f "%e s, %M KB peak" $ddm distill -w $C -q --set distill.ipc_grow=4 > $out/k1000-ipc4-distill.txt 2>&1
$ddm check -w $C -q --peers if-explicit --try-temperature 0 > $out/k1000-ipc4-check.txt 2>&1
