"""In-memory image-classification data: a :class:`Split` of tensors and a :class:`Dataset` of two splits."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ddm.exceptions import DataError

log = logging.getLogger(__name__)

#: where :func:`cached_rows` keeps the rows scikit-learn chose (None: nowhere; :func:`rows_cache` sets it)
_ROWS_CACHE: ContextVar[Path | None] = ContextVar("ddm_rows_cache", default=None)


@contextmanager
def rows_cache(folder: str | Path | None) -> Iterator[None]:
    """Within this block, the stratified subsets and held-out splits scikit-learn chooses are kept in ``folder``
    (the command line passes the workspace's ``cache/``) and read back from it the next time the same labels, sizes
    and seed ask for them, so that a command on a workspace of a Fashion-MNIST subset or an ``.npz`` file does not
    import scikit-learn (about 1.3 s of a 4 s command on 2 CPU cores) to choose the same rows again."""
    token = _ROWS_CACHE.set(None if folder is None else Path(folder))
    try:
        yield
    finally:
        _ROWS_CACHE.reset(token)


def _sklearn_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("scikit-learn")
    except PackageNotFoundError:
        return "none"


def cached_rows(kind: str, y: np.ndarray, params: tuple[object, ...], compute: Callable[[], np.ndarray]) -> np.ndarray:
    """The row indices ``compute()`` gives for labels ``y`` (``kind`` and ``params`` say which choice: e.g. a subset's
    size and seed), read from the :func:`rows_cache` folder where an earlier call with the same labels, ``kind``,
    ``params`` and scikit-learn version stored them, else computed and stored there (atomically; a folder that cannot
    be written only costs the cache). Outside :func:`rows_cache`, ``compute()``."""
    folder = _ROWS_CACHE.get()
    if folder is None:
        return compute()
    from ddm.exceptions import CorruptArtifactError
    from ddm.workspace import load_tensors, save_tensors

    h = hashlib.sha256(f"{kind}|{params!r}|{_sklearn_version()}|".encode())
    h.update(np.ascontiguousarray(y, dtype=np.int64).tobytes())
    path = folder / f"rows-{kind}-{h.hexdigest()[:32]}.safetensors"
    if path.exists():
        try:
            rows = load_tensors(path)["rows"].numpy()
        except (CorruptArtifactError, KeyError) as exc:  # a damaged file: chosen again and written over
            log.warning("%s could not be read (%s): choosing the rows again", path, exc)
        else:
            if rows.ndim == 1 and len(np.unique(rows)) == len(rows) and (len(rows) == 0 or (
                    rows.min() >= 0 and rows.max() < len(y))):
                return rows
            log.warning("%s does not hold rows of a split of %d samples: choosing them again", path, len(y))
    rows = np.asarray(compute(), dtype=np.int64)
    try:
        save_tensors(path, {"rows": torch.from_numpy(rows.copy())})
    except OSError as exc:
        log.debug("rows not cached in %s: %s", folder, exc)
    return rows


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
    labels = y.numpy()

    def choose() -> np.ndarray:
        from sklearn.model_selection import train_test_split

        keep, _ = train_test_split(np.arange(len(labels)), train_size=size, stratify=labels, random_state=seed)
        return np.sort(keep)

    return torch.as_tensor(cached_rows("subset", labels, (size, seed), choose))
