"""A generated stand-in for Tiny ImageNet in its official layout (``tiny-imagenet-200/``: wnids.txt,
train/<wnid>/images, val/images with val_annotations.txt), for scale probes of ``--dataset tinyimagenet`` where the
real archive cannot be downloaded: 200 classes of 64x64 JPEGs, each class a striped colour pattern of its own
frequency and phase with noise. It measures time and memory at Tiny ImageNet's shapes (200 classes, 64x64x3), not
accuracy.

    python benchmarks/make_tinyimagenet.py /tmp/tinbig --per-class 100 --val 2000
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("root", type=Path, help="folder to write tiny-imagenet-200/ into")
    ap.add_argument("--per-class", type=int, default=100, help="training images per class (the real set: 500)")
    ap.add_argument("--val", type=int, default=2000, help="labelled val images (the real set: 10,000)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    from PIL import Image

    rng = np.random.default_rng(args.seed)
    folder = args.root / "tiny-imagenet-200"
    wnids = [f"n{10000000 + i:08d}" for i in range(200)]
    (folder / "val" / "images").mkdir(parents=True, exist_ok=True)
    (folder / "wnids.txt").write_text("\n".join(wnids) + "\n")
    yy, xx = np.mgrid[0:64, 0:64]

    def image(c: int) -> Image.Image:
        base = 128 + 60 * np.sin((xx * (c % 7 + 1) + yy * (c % 5 + 1)) / 10.0 + rng.uniform(0, 6))
        px = np.stack([base, np.roll(base, c, 0), np.roll(base, c, 1)], -1) + rng.normal(0, 15, (64, 64, 3))
        return Image.fromarray(np.clip(px, 0, 255).astype(np.uint8))

    for c, wnid in enumerate(wnids):
        d = folder / "train" / wnid / "images"
        d.mkdir(parents=True, exist_ok=True)
        for i in range(args.per_class):
            image(c).save(d / f"{wnid}_{i}.JPEG", quality=85)
    lines = []
    for i in range(args.val):
        c = i % len(wnids)
        image(c).save(folder / "val" / "images" / f"val_{i}.JPEG", quality=85)
        lines.append(f"val_{i}.JPEG\t{wnids[c]}\t0\t0\t63\t63")
    (folder / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    print(f"wrote {folder}: {len(wnids) * args.per_class} training and {args.val} val images")


if __name__ == "__main__":
    main()
