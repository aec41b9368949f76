"""MNIST-format IDX files (plain or ``.gz``): MNIST and Fashion-MNIST from local files.

Fashion-MNIST defaults to where Debian's ``dataset-fashion-mnist`` package puts it
(``/usr/share/datasets/fashion-mnist``; ``apt-get install dataset-fashion-mnist``).
Normalisation: pixels scaled to [0, 1], then standardised with the usual per-dataset statistics
(MNIST 0.1307/0.3081, Fashion-MNIST 0.2860/0.3530).
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ddm.data.dataset import Dataset, Split, normalise
from ddm.exceptions import DataError

_DTYPES: dict[int, Any] = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
STATS = {"mnist": ((0.1307,), (0.3081,)), "fashion-mnist": ((0.2860,), (0.3530,))}
DEFAULT_DIRS = {"fashion-mnist": "/usr/share/datasets/fashion-mnist", "mnist": None}
FASHION_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (optionally gzip-compressed) into a numpy array."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:  # type: ignore[operator]
        raw = fh.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path} is not an IDX file (bad magic number)")
    code, ndim = raw[2], raw[3]
    if code not in _DTYPES:
        raise DataError(f"{path}: unknown IDX data type 0x{code:02x}")
    header = 4 + 4 * ndim
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_DTYPES[code])
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(f"{path}: expected {expected} bytes of data for shape {dims}, found {len(raw) - header}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)


def _find(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (folder / name).exists():
            return folder / name
    return None


def has_idx_files(folder: str | Path | None) -> bool:
    if folder is None or not Path(folder).is_dir():
        return False
    return all(_find(Path(folder), s) is not None for pair in FILES.values() for s in pair)


def load_idx_dataset(name: str, data_dir: str | Path | None) -> Dataset:
    default = DEFAULT_DIRS.get(name)
    folder = Path(data_dir) if data_dir else (Path(default) if default else None)
    if folder is None or not has_idx_files(folder):
        hint = (
            "install Debian's package (apt-get install dataset-fashion-mnist) or pass --data-dir"
            if name == "fashion-mnist"
            else "pass --data-dir pointing at the four MNIST IDX files (train-images-idx3-ubyte[.gz], ...)"
        )
        raise DataError(f"{name}: IDX files not found in {folder}; {hint}")
    mean, std = STATS[name]
    splits = {}
    for split, (img_stem, lab_stem) in FILES.items():
        images = read_idx(_find(folder, img_stem))  # type: ignore[arg-type]
        labels = read_idx(_find(folder, lab_stem))  # type: ignore[arg-type]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DataError(f"{name} {split}: images {images.shape} and labels {labels.shape} do not match")
        x = normalise(images.astype(np.float32) / 255.0, mean, std)
        splits[split] = Split(x, torch.as_tensor(labels.astype(np.int64)))
    return Dataset(
        name=name,
        train=splits["train"],
        test=splits["test"],
        num_classes=10,
        mean=mean,
        std=std,
        class_names=FASHION_CLASSES if name == "fashion-mnist" else [str(i) for i in range(10)],
    )
