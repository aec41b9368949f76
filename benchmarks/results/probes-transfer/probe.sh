#!/bin/bash
# the transfer probes (run from the repository root after make_data.py): the long-tailed probes' script with this
# folder's pretrained_models on PYTHONPATH and ROOT=runs/transfer; every later command on these workspaces needs the
# same PYTHONPATH, since the workspace rebuilds its model from the import path
here=$(cd "$(dirname "$0")" && pwd)
PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" ROOT=runs/transfer exec bash "$here/../probes-lt/probe.sh" "$@"
