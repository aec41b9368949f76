#!/bin/bash
# long-tailed probes as a user would run them (seeds never used before): ddm run, ddm check with peers,
# ddm unlearn of 4 groups and of the rarest class (--verify), ddm diagnose
set -u
D=${DDM:-.venv/bin/ddm}  # run from the repository root
mkdir -p runs/lt
name=$1; rare=$2; shift 2
W=runs/lt/$name
$D run -w $W -q --preset demo "$@" > runs/lt/$name.run.txt 2>&1 || echo "run failed rc=$?" >> runs/lt/$name.run.txt
$D check -w $W -q --peers if-explicit,tracin --try-temperature 0 > runs/lt/$name.check.txt 2>&1 || echo "check failed" >> runs/lt/$name.check.txt
$D unlearn -w $W -q --groups 1,6,11,16 --verify 1 > runs/lt/$name.unlearn.txt 2>&1 || echo "unlearn failed" >> runs/lt/$name.unlearn.txt
$D unlearn -w $W -q --groups $rare --classes --verify 1 > runs/lt/$name.unlearn-class.txt 2>&1 || echo "unlearn failed" >> runs/lt/$name.unlearn-class.txt
$D diagnose -w $W -q > runs/lt/$name.diagnose.txt 2>&1 || echo "diagnose failed" >> runs/lt/$name.diagnose.txt
echo done > runs/lt/$name.done
