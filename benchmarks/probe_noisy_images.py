"""Write the noisy-image probe's data: 1,200 random 3x32x32 images, class = a colour shift under heavy noise.

Each of 10 classes has a random mean colour (one value per channel); an image is its class's colour plus Gaussian
noise of standard deviation 2 in every pixel, so the only signal is a small colour shift. 1,000 training and 200
test images, saved as the .npz that ``--dataset npz`` reads. A probe (measured once, used for no choice):

    python benchmarks/probe_noisy_images.py runs/noisy/img.npz
    ddm run -w runs/noisy/img --dataset npz --data-dir runs/noisy/img.npz --set cluster.per_class=4
    ddm check -w runs/noisy/img --peers if-explicit,tracin
    python benchmarks/binary_decompose.py runs/noisy/img   # beside the groups' real samples, the check's halves

A second argument draws another data set (its seed; 0 by default): ``python benchmarks/probe_noisy_images.py
runs/noisy/img-s1.npz 1``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/noisy/img.npz")
    rng = np.random.default_rng(int(sys.argv[2]) if len(sys.argv) > 2 else 0)
    n = 1200
    y = rng.integers(0, 10, n)
    base = rng.normal(size=(10, 3, 1, 1))
    x = (base[y] + rng.normal(size=(n, 3, 32, 32)) * 2.0).astype("float32")
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, X=x[:1000], y=y[:1000], X_test=x[1000:], y_test=y[1000:])
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
