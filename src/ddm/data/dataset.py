"""In-memory image-classification data: a :class:`Split` of tensors and a :class:`Dataset` of two splits."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import torch

from ddm.exceptions import DataError


@dataclass
class Split:
    """Images ``x`` of shape ``[N, C, H, W]`` (float32, normalised) and labels ``y`` of shape ``[N]``.

    ``index`` holds each row's position in the full split it came from, so subsets keep their ids.
    """

    x: torch.Tensor
    y: torch.Tensor
    index: torch.Tensor = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.x.ndim != 4:
            raise DataError(f"images must have shape [N, C, H, W], got {tuple(self.x.shape)}")
        if self.y.ndim != 1 or len(self.y) != len(self.x):
            raise DataError(f"labels must have shape [{len(self.x)}], got {tuple(self.y.shape)}")
        self.x = self.x.float()
        self.y = self.y.long()
        if self.index is None:
            self.index = torch.arange(len(self.x))

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, item: int | slice | list[int] | torch.Tensor) -> Split:
        if isinstance(item, int):
            item = [item]
        if isinstance(item, list):
            item = torch.as_tensor(item, dtype=torch.long)
        return Split(self.x[item], self.y[item], self.index[item])

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        h.update(self.x.numpy().tobytes())
        h.update(self.y.numpy().tobytes())
        return h.hexdigest()[:16]


@dataclass
class Dataset:
    """A named dataset with a train and a test split and the normalisation applied to both."""

    name: str
    train: Split
    test: Split
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: list[str] | None = None

    @property
    def image_shape(self) -> tuple[int, int, int]:
        c, h, w = self.train.x.shape[1:]
        return int(c), int(h), int(w)

    def summary(self) -> str:
        c, h, w = self.image_shape
        if (h, w) == (1, 1):  # feature vectors (ddm.data.from_arrays of [N, D]): standardised per feature
            return (f"{self.name}: {len(self.train)} train / {len(self.test)} test samples of {c} features, "
                    f"{self.num_classes} classes, each feature standardised with the training split's mean and "
                    "standard deviation")
        return (
            f"{self.name}: {len(self.train)} train / {len(self.test)} test images of {c}x{h}x{w}, "
            f"{self.num_classes} classes, normalised with mean {self.mean} std {self.std}"
        )


def normalise(images: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """uint8/float ``[N, H, W]`` or ``[N, H, W, C]`` in [0, 1] -> normalised float ``[N, C, H, W]``."""
    x = torch.as_tensor(np.ascontiguousarray(images), dtype=torch.float32)
    if x.ndim == 3:
        x = x.unsqueeze(1)
    elif x.ndim == 4 and x.shape[-1] in (1, 3):
        x = x.permute(0, 3, 1, 2)
    m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return ((x - m) / s).contiguous()


def stratified_subset(split: Split, size: int | None, seed: int, name: str = "the subset") -> Split:
    """A class-stratified random subset of ``size`` rows (the whole split when None or larger). ``name`` (e.g.
    ``data.test_size``) is what an error about too small a size names."""
    if size is None or size >= len(split):
        return split
    return split[stratified_indices(split.y, size, seed, name)]


def stratified_indices(y: torch.Tensor, size: int | None, seed: int, name: str = "the subset") -> torch.Tensor:
    """The sorted rows :func:`stratified_subset` keeps of a split labelled ``y`` (all of them when ``size`` is None
    or at least ``len(y)``): a reader that decodes images one by one can pick them before decoding any."""
    if size is None or size >= len(y):
        return torch.arange(len(y))
    classes = int(torch.unique(y).numel())
    if size < classes:
        raise DataError(f"{name} = {size} is smaller than the number of classes ({classes}): a stratified subset "
                        f"needs at least one sample of each; use at least {classes}, or leave it unset for the whole "
                        "split")
    from sklearn.model_selection import train_test_split

    keep, _ = train_test_split(np.arange(len(y)), train_size=size, stratify=y.numpy(), random_state=seed)
    return torch.as_tensor(np.sort(keep))
