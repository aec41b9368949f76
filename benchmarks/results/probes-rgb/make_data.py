"""RGB probe data in the CIFAR-10 binary format, written to ``runs/rgb/cifar-10-batches-bin/`` (run from the
repository root with the project's Python): Fashion-MNIST images padded to 32 x 32, each drawn in a random
foreground colour on a random background colour (both independent of the class) with a little pixel noise, so that
colour is a nuisance and shape the signal, as in natural images. 10,000 training images (five files of 2,000) and
2,000 test images, read by ``ddm run --dataset cifar10 --data-dir runs/rgb`` through the library's own reader of
the official binary files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ddm.data.idx import load_idx_dataset


def coloured(rng: np.random.Generator, x: np.ndarray) -> np.ndarray:
    """``[N, 28, 28]`` intensities in [0, 1] -> ``[N, 3, 32, 32]`` uint8 RGB."""
    n = len(x)
    mask = np.pad(x, ((0, 0), (2, 2), (2, 2)))[:, None]  # [N, 1, 32, 32]
    fg = rng.uniform(0, 1, (n, 3, 1, 1))
    bg = rng.uniform(0, 1, (n, 3, 1, 1))
    img = bg * (1 - mask) + fg * mask + rng.normal(0, 0.05, (n, 3, 32, 32))
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def write(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    records = np.concatenate([labels.astype(np.uint8)[:, None], images.reshape(len(images), -1)], 1)
    records.tofile(path)


def main() -> None:
    rng = np.random.default_rng(131)
    ds = load_idx_dataset("fashion-mnist", None)
    # the IDX loader standardises; its statistics undo that back to [0, 1] intensities
    mean, std = ds.mean[0], ds.std[0]
    train = (ds.train.x[:, 0].numpy() * std + mean).clip(0, 1)
    test = (ds.test.x[:, 0].numpy() * std + mean).clip(0, 1)
    tr = rng.choice(len(train), 10_000, replace=False)
    te = rng.choice(len(test), 2_000, replace=False)
    folder = Path("runs/rgb/cifar-10-batches-bin")
    folder.mkdir(parents=True, exist_ok=True)
    x_tr, y_tr = coloured(rng, train[tr]), ds.train.y.numpy()[tr]
    for i in range(5):
        write(folder / f"data_batch_{i + 1}.bin", x_tr[i * 2000:(i + 1) * 2000], y_tr[i * 2000:(i + 1) * 2000])
    write(folder / "test_batch.bin", coloured(rng, test[te]), ds.test.y.numpy()[te])
    print(folder, "train", len(tr), "test", len(te), "classes", np.bincount(y_tr).tolist())


if __name__ == "__main__":
    main()
