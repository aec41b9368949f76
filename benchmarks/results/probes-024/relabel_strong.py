"""relabel_strong: relabelled fine-tuning where a removed sample is relabelled only if at least 4 of its 5 nearest kept
samples name the same other class (else it is left out), run through benchmarks/unlearn_relabel.py's loop (the same
arguments). A variant for fresh2.sh's test."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from ddm.baselines import unlearners as U
from ddm.data.dataset import Split

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import unlearn_relabel as R  # noqa: E402

AGREE = 4  # of the 5 neighbours


def strong_labels(x: torch.Tensor, ref_x: torch.Tensor, ref_y: torch.Tensor, k: int = 5,
                  chunk: int = 1024) -> torch.Tensor:
    """The majority label of each row's ``k`` nearest reference rows where at least ``AGREE`` share it, else -1."""
    ref = ref_x.flatten(1).float()
    out = []
    for s in range(0, len(x), chunk):
        idx = torch.cdist(x[s : s + chunk].flatten(1).float(), ref).topk(k, largest=False).indices
        labels = ref_y[idx]
        mode = torch.mode(labels, 1).values
        agree = (labels == mode[:, None]).sum(1)
        out.append(torch.where(agree >= AGREE, mode, torch.full_like(mode, -1)))
    return torch.cat(out)


def strong_split(train: Split, keep: torch.Tensor, k: int = 5) -> tuple[Split, int]:
    gone = torch.nonzero(~keep).flatten()
    labels = strong_labels(train.x[gone], train.x[keep], train.y[keep], k).to(train.y)
    moved_mask = (labels != train.y[gone]) & (labels >= 0)
    moved = gone[moved_mask]
    y, use = train.y.clone(), keep.clone()
    y[moved], use[moved] = labels[moved_mask], True
    rows = torch.nonzero(use).flatten()
    return Split(train.x[rows], y[rows], train.index[rows]), len(moved)


if __name__ == "__main__":
    U.relabelled_split = strong_split  # relabel_knn looks it up at call time
    sys.argv = ["unlearn_relabel.py", *sys.argv[1:]]
    R.main()
