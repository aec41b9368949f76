#!/bin/bash
# probes as a user would run them (seeds never used before): ddm run, ddm check with peers, ddm unlearn of 4 groups
# and of one class (--verify), ddm diagnose; workspaces and outputs under $ROOT (runs/lt: the long-tailed probes;
# ../probes-rgb/probe.sh sets runs/rgb)
set -u
D=${DDM:-.venv/bin/ddm}  # run from the repository root
R=${ROOT:-runs/lt}
mkdir -p "$R"
name=$1; cls=$2; shift 2
W=$R/$name
$D run -w $W -q --preset demo "$@" > $R/$name.run.txt 2>&1 || echo "run failed rc=$?" >> $R/$name.run.txt
$D check -w $W -q --peers if-explicit,tracin --try-temperature 0 > $R/$name.check.txt 2>&1 || echo "check failed" >> $R/$name.check.txt
$D unlearn -w $W -q --groups 1,6,11,16 --verify 1 > $R/$name.unlearn.txt 2>&1 || echo "unlearn failed" >> $R/$name.unlearn.txt
$D unlearn -w $W -q --groups $cls --classes --verify 1 > $R/$name.unlearn-class.txt 2>&1 || echo "unlearn failed" >> $R/$name.unlearn-class.txt
$D diagnose -w $W -q > $R/$name.diagnose.txt 2>&1 || echo "diagnose failed" >> $R/$name.diagnose.txt
echo done > $R/$name.done
