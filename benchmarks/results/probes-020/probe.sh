#!/bin/bash
# probes as a user would run them (seeds never used before): ddm run, ddm check with peers, ddm unlearn --verify
set -u
D=${DDM:-.venv/bin/ddm}  # run from the repository root
mkdir -p runs/v
name=$1; shift
W=runs/v/$name
$D run -w $W -q --preset demo "$@" > runs/v/$name.run.txt 2>&1 || echo "run failed rc=$?" >> runs/v/$name.run.txt
$D check -w $W -q --peers if-explicit,tracin --try-temperature 0 > runs/v/$name.check.txt 2>&1 || echo "check failed" >> runs/v/$name.check.txt
$D unlearn --method step -w $W -q --groups 1,6,11,16 --verify 1 > runs/v/$name.unlearn.txt 2>&1 || echo "unlearn failed" >> runs/v/$name.unlearn.txt
echo done > runs/v/$name.done
