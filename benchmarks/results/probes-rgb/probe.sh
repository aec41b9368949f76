#!/bin/bash
# RGB probes as a user would run them: the long-tailed probes' script (ddm run, ddm check with peers, ddm unlearn of
# 4 groups and of one class with --verify, ddm diagnose) with its workspaces under runs/rgb
ROOT=runs/rgb exec bash "$(dirname "$0")/../probes-lt/probe.sh" "$@"
