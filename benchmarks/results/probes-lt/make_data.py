"""Long-tailed probe data, written under ``runs/lt/`` (run from the repository root with the project's Python).

* ``fmnist-lt.npz``: Fashion-MNIST training images in an exponential class profile from 800 images of the most
  frequent class down to 40 of the rarest (ratio 20; which class is rare is drawn at random), with a balanced test
  split of 100 images per class.
* ``digits-lt.npz``: scikit-learn's digits, 400 images held out for the test split (at most 40 per class), the
  rest subsampled from 140 images down to 14 (ratio 10).

Both go to ``ddm run --dataset npz --data-dir FILE`` (``probe.sh`` beside this file).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

from ddm.data.idx import load_idx_dataset


def long_tailed(rng: np.random.Generator, x: np.ndarray, y: np.ndarray, head: int, ratio: float, x_test: np.ndarray,
                y_test: np.ndarray, per_class_test: int, out: Path) -> None:
    classes = int(y.max()) + 1
    sizes = [int(round(head * ratio ** (-r / (classes - 1)))) for r in range(classes)]
    order = rng.permutation(classes)  # order[r]: the class with the r-th largest share
    keep = np.concatenate([rng.choice(np.flatnonzero(y == c), sizes[r], replace=False) for r, c in enumerate(order)])
    test = np.concatenate([rng.choice(np.flatnonzero(y_test == c), min(per_class_test, int((y_test == c).sum())),
                                      replace=False) for c in range(classes)])
    np.savez(out, X=x[keep].astype(np.float32), y=y[keep].astype(np.int64), X_test=x_test[test].astype(np.float32),
             y_test=y_test[test].astype(np.int64))
    print(out, "class sizes", {int(c): s for c, s in zip(order, sizes, strict=True)}, "train", len(keep),
          "test", len(test))


def main() -> None:
    rng = np.random.default_rng(121)
    folder = Path("runs/lt")
    folder.mkdir(parents=True, exist_ok=True)
    fm = load_idx_dataset("fashion-mnist", None)
    long_tailed(rng, fm.train.x.numpy(), fm.train.y.numpy(), 800, 20.0, fm.test.x.numpy(), fm.test.y.numpy(), 100,
                folder / "fmnist-lt.npz")
    digits = load_digits()
    x, y = digits.images.reshape(-1, 8, 8) / 16.0, digits.target
    idx = rng.permutation(len(y))
    test, train = idx[:400], idx[400:]
    long_tailed(rng, x[train], y[train], 140, 10.0, x[test], y[test], 40, folder / "digits-lt.npz")


if __name__ == "__main__":
    main()
