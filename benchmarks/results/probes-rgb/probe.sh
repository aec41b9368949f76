#!/bin/bash
# RGB probes as a user would run them (seeds never used before): ddm run, ddm check with peers,
# ddm unlearn of 4 groups and of one class (--verify), ddm diagnose
set -u
D=${DDM:-.venv/bin/ddm}  # run from the repository root
mkdir -p runs/rgb
name=$1; cls=$2; shift 2
W=runs/rgb/$name
$D run -w $W -q --preset demo "$@" > runs/rgb/$name.run.txt 2>&1 || echo "run failed rc=$?" >> runs/rgb/$name.run.txt
$D check -w $W -q --peers if-explicit,tracin --try-temperature 0 > runs/rgb/$name.check.txt 2>&1 || echo "check failed" >> runs/rgb/$name.check.txt
$D unlearn -w $W -q --groups 1,6,11,16 --verify 1 > runs/rgb/$name.unlearn.txt 2>&1 || echo "unlearn failed" >> runs/rgb/$name.unlearn.txt
$D unlearn -w $W -q --groups $cls --classes --verify 1 > runs/rgb/$name.unlearn-class.txt 2>&1 || echo "unlearn failed" >> runs/rgb/$name.unlearn-class.txt
$D diagnose -w $W -q > runs/rgb/$name.diagnose.txt 2>&1 || echo "diagnose failed" >> runs/rgb/$name.diagnose.txt
echo done > runs/rgb/$name.done
