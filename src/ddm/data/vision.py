"""CIFAR-10/100 from their official *binary* files, and MNIST/CIFAR through torchvision (lazy).

The binary versions (``cifar-10-binary.tar.gz`` -> ``cifar-10-batches-bin/``,
``cifar-100-binary.tar.gz`` -> ``cifar-100-binary/``) are read directly: no pickle is involved.
When they are absent and torchvision is installed (``pip install 'ddm[vision]'``), torchvision
loads (and with ``download=True`` fetches) the data; note that torchvision's CIFAR reader
unpickles the Python version of the files, so only use copies you trust.
Normalisation: the usual per-channel training statistics of each dataset.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from ddm.data.dataset import Dataset, Split, normalise
from ddm.exceptions import DataError, require

log = logging.getLogger(__name__)

STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "mnist": ((0.1307,), (0.3081,)),
}
BINARY = {
    "cifar10": ("cifar-10-batches-bin", [f"data_batch_{i}.bin" for i in range(1, 6)], ["test_batch.bin"], 1, 10),
    "cifar100": ("cifar-100-binary", ["train.bin"], ["test.bin"], 2, 100),
}
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def read_cifar_binary(path: str | Path, label_bytes: int) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR binary file -> (uint8 images ``[N, 32, 32, 3]``, labels ``[N]``).

    For CIFAR-100 (``label_bytes=2``) the fine label (second byte) is returned.
    """
    raw = np.fromfile(path, dtype=np.uint8)
    rec = label_bytes + 3072
    if raw.size == 0 or raw.size % rec:
        raise DataError(f"{path}: size {raw.size} is not a multiple of the {rec}-byte CIFAR record")
    raw = raw.reshape(-1, rec)
    labels = raw[:, label_bytes - 1].astype(np.int64)
    images = raw[:, label_bytes:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return images, labels


def _binary_folder(name: str, data_dir: str | Path | None) -> Path | None:
    if data_dir is None:
        return None
    sub, train_files, test_files, _, _ = BINARY[name]
    for folder in (Path(data_dir) / sub, Path(data_dir)):
        if all((folder / f).exists() for f in train_files + test_files):
            return folder
    return None


def load_cifar(name: str, data_dir: str | Path | None, download: bool = False) -> Dataset:
    mean, std = STATS[name]
    folder = _binary_folder(name, data_dir)
    _, train_files, test_files, label_bytes, n_classes = BINARY[name]
    if folder is not None:
        splits = {}
        for split, files in (("train", train_files), ("test", test_files)):
            parts = [read_cifar_binary(folder / f, label_bytes) for f in files]
            images = np.concatenate([p[0] for p in parts])
            labels = np.concatenate([p[1] for p in parts])
            if labels.max() >= n_classes:
                raise DataError(f"{name}: label {labels.max()} out of range in {folder}")
            splits[split] = Split(normalise(images / 255.0, mean, std), torch.as_tensor(labels))
        return Dataset(name, splits["train"], splits["test"], n_classes, mean, std,
                       CIFAR10_CLASSES if name == "cifar10" else None)
    return _load_torchvision(name, data_dir, download)


def _load_torchvision(name: str, data_dir: str | Path | None, download: bool) -> Dataset:
    try:
        datasets = require("torchvision.datasets", "vision")
    except Exception as exc:
        raise type(exc)(
            (f"{name}: no local binary files found in {data_dir}" if data_dir else f"{name}: no --data-dir given")
            + " and torchvision is not installed. "
            "Either pass --data-dir with the official binary files, or install the extra: "
            "pip install 'ddm[vision]'"
        ) from exc
    root = str(data_dir or Path.home() / ".cache" / "ddm")
    cls = {"mnist": "MNIST", "cifar10": "CIFAR10", "cifar100": "CIFAR100"}[name]
    mean, std = STATS[name]
    splits = {}
    try:
        for split in ("train", "test"):
            ds = getattr(datasets, cls)(root, train=split == "train", download=download)
            data = ds.data.numpy() if isinstance(ds.data, torch.Tensor) else np.asarray(ds.data)
            labels = np.asarray(ds.targets, dtype=np.int64)
            splits[split] = Split(normalise(data / 255.0, mean, std), torch.as_tensor(labels))
    except RuntimeError as exc:
        raise DataError(f"{name}: torchvision could not find the data in {root} ({exc}); "
                        "pass --data-dir, or --set data.download=true") from exc
    n_classes = {"mnist": 10, "cifar10": 10, "cifar100": 100}[name]
    return Dataset(name, splits["train"], splits["test"], n_classes, mean, std)
