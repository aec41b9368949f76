"""Your own data: :func:`from_arrays` turns arrays (numpy or torch, any feature shape) into a :class:`Dataset`.

Features are standardised with the training split's mean and standard deviation (per channel for images,
per feature otherwise) unless ``normalise=False``. Shapes: ``[N, D]`` features become ``[N, D, 1, 1]``
(D channels of a 1x1 image: the presets give them an MLP; a ConvNet with instance norm refuses them, since it
would normalise every feature to 0), ``[N, H, W]`` gray images become
``[N, 1, H, W]``, ``[N, C, H, W]`` stays, and channel-last ``[N, H, W, C]`` images (C of 1 or 3) become
``[N, C, H, W]``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ddm.data.dataset import Dataset, Split, cached_rows
from ddm.exceptions import DataError

log = logging.getLogger(__name__)


#: what to do with labels that are not class indices (names, or numbers that skip classes)
TO_INDICES = ("map them to class indices 0..C-1 first, e.g. `names, y = np.unique(y, return_inverse=True)`, and pass "
              "class_names=list(names)")


def _tensor(a: Any, what: str) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        return a.detach().cpu()
    if not isinstance(a, np.ndarray) and callable(getattr(a, "to_numpy", None)):
        a = np.array(a.to_numpy())  # a pandas DataFrame or Series (copied: its own array may be read-only)
    if isinstance(a, np.ndarray):
        if a.dtype.kind in "USO" and what.startswith("y"):
            raise DataError(f"{what} holds {'strings' if a.dtype.kind in 'US' else 'Python objects'}, not class "
                            f"indices: {TO_INDICES}")
        if a.dtype == object:
            raise DataError(f"{what} is a numpy array of Python objects; pass a numeric array")
        if a.dtype.kind in "US":
            raise DataError(f"{what} holds strings; pass numbers (encode categorical features first, e.g. with "
                            "sklearn.preprocessing.OneHotEncoder)")
        return torch.from_numpy(np.ascontiguousarray(a))
    if isinstance(a, (list, tuple)):
        try:
            return torch.as_tensor(np.asarray(a))
        except (ValueError, TypeError) as exc:
            raise DataError(f"{what} could not be read as a numeric array ({exc})") from None
    raise DataError(f"{what} must be a numpy array, a torch tensor or a pandas DataFrame / Series, got "
                    f"{type(a).__name__}; for a torch Dataset or DataLoader, use "
                    "ddm.data.from_torch(dataset_or_loader)")


def _images(x: torch.Tensor, what: str) -> torch.Tensor:
    if x.ndim == 2:
        return x[:, :, None, None]
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4:
        if x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3) and x.shape[2:] != (1, 1):  # [N, D, 1, 1]: features
            # channel-last images ([N, H, W, C], as numpy and PIL hold them): channel-first, as the models take them
            log.info("%s: channel-last images %s taken as [N, C, H, W] %s", what, tuple(x.shape),
                     (x.shape[0], x.shape[3], x.shape[1], x.shape[2]))
            return x.permute(0, 3, 1, 2).contiguous()
        return x
    raise DataError(f"{what} must have shape [N, D], [N, H, W], [N, C, H, W] or [N, H, W, C], got {tuple(x.shape)}")


def _labels(y: torch.Tensor, n: int, what: str) -> torch.Tensor:
    if y.ndim != 1 or len(y) != n:
        raise DataError(f"{what} must be one integer class per sample, shape [{n}], got {tuple(y.shape)}")
    if y.dtype.is_floating_point and not torch.equal(y, y.round()):
        raise DataError(f"{what} holds non-integer values; pass class indices 0..C-1")
    y = y.long()
    if len(y) and y.min() < 0:
        raise DataError(f"{what} holds negative classes ({int(y.min())}); pass class indices 0..C-1")
    return y


def from_arrays(X: Any, y: Any, X_test: Any = None, y_test: Any = None, *, name: str = "arrays",
                num_classes: int | None = None, test_fraction: float = 0.2, seed: int = 0,
                normalise: bool = True, class_names: list[str] | None = None) -> Dataset:
    """A :class:`Dataset` from arrays. Without ``X_test``, a stratified ``test_fraction`` of ``X`` is held out."""
    x = _images(_tensor(X, "X").float(), "X")
    yy = _labels(_tensor(y, "y"), len(x), "y")
    if len(x) == 0:
        raise DataError("X holds no samples")
    if not torch.isfinite(x).all():
        raise DataError("X holds NaN or infinite values")
    if (X_test is None) != (y_test is None):
        raise DataError("give both X_test and y_test, or neither")
    if X_test is None:
        if not 0 < test_fraction < 1:
            raise DataError(f"test_fraction must lie in (0, 1), got {test_fraction}")
        counts = torch.bincount(yy)
        strat = yy.numpy() if counts[counts > 0].min() >= 2 else None

        def choose() -> np.ndarray:
            from sklearn.model_selection import train_test_split

            _, held = train_test_split(np.arange(len(x)), test_size=test_fraction, random_state=seed, stratify=strat)
            return np.sort(held)

        te = torch.as_tensor(cached_rows("held-out", yy.numpy(), (test_fraction, seed, strat is not None), choose))
        out = torch.ones(len(x), dtype=torch.bool)
        out[te] = False
        tr = torch.nonzero(out).flatten()
        xt, yt = x[te], yy[te]
        x, yy = x[tr], yy[tr]
    else:
        xt = _images(_tensor(X_test, "X_test").float(), "X_test")
        yt = _labels(_tensor(y_test, "y_test"), len(xt), "y_test")
        if xt.shape[1:] != x.shape[1:]:
            raise DataError(f"X_test's samples have shape {tuple(xt.shape[1:])}, X's {tuple(x.shape[1:])}")
    c = int(max(int(yy.max()), int(yt.max()) if len(yt) else 0)) + 1
    if num_classes is not None:
        if num_classes < c:
            raise DataError(f"labels go up to {c - 1} but num_classes={num_classes}")
        c = num_classes
    present = torch.bincount(yy, minlength=c)
    if int((present > 0).sum()) < 2:
        raise DataError(f"the training split holds {int((present > 0).sum())} class: ddm attributes classifiers, "
                        "which need at least two")
    if (present == 0).any():
        empty = torch.nonzero(present == 0).flatten().tolist()
        log.warning("classes %s have no training samples: the model still gets an output for each (labels keep "
                    "their values, up to %d); to leave them out, %s", empty, c - 1, TO_INDICES)
    mean, std = (0.0,), (1.0,)
    if normalise:
        dims = (0, 2, 3)
        m = x.mean(dims, keepdim=True)
        s = x.std(dims, keepdim=True).clamp(min=1e-8)
        x, xt = (x - m) / s, (xt - m) / s
        mean, std = tuple(m.flatten().tolist()), tuple(s.flatten().tolist())
    return Dataset(name, Split(x, yy), Split(xt, yt), c, mean, std, class_names)


def _stack(source: Any, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)`` stacked from a torch ``Dataset`` (items ``(x, y)``) or a ``DataLoader`` (batches ``(x, y)``)."""
    from torch.utils.data import DataLoader
    from torch.utils.data import Dataset as TorchDataset

    if isinstance(source, DataLoader):
        batches = list(source)
    elif isinstance(source, TorchDataset):
        try:
            n = len(source)  # type: ignore[arg-type]
        except TypeError:
            raise DataError(f"{what} is a torch Dataset without len(); wrap it in a DataLoader") from None
        batches = [source[i] for i in range(n)]
    else:
        raise DataError(f"{what} must be a torch Dataset or DataLoader, got {type(source).__name__}; "
                        "for arrays use ddm.data.from_arrays(X, y)")
    if not batches:
        raise DataError(f"{what} is empty")
    first = batches[0]
    if not isinstance(first, (tuple, list)) or len(first) < 2:
        raise DataError(f"{what} must yield (input, label) pairs, got {type(first).__name__}")
    xs = [torch.as_tensor(b[0]) for b in batches]
    ys = [torch.as_tensor(b[1]) for b in batches]
    if isinstance(source, DataLoader):
        return torch.cat(xs), torch.cat(ys).reshape(-1)
    return torch.stack(xs), torch.stack(ys).reshape(-1)


def from_torch(train: Any, test: Any = None, **options: Any) -> Dataset:
    """A :class:`Dataset` from a torch ``Dataset`` or ``DataLoader`` of ``(input, label)`` (and optionally a
    test one); the samples are stacked once here and then treated as :func:`from_arrays` treats arrays
    (``options`` are its keywords). Transforms run once, at this point: what the model sees in every stage."""
    x, y = _stack(train, "train")
    if test is None:
        return from_arrays(x, y, **options)
    xt, yt = _stack(test, "test")
    return from_arrays(x, y, xt, yt, **options)


#: the arrays an ``.npz`` file for the ``npz`` dataset holds (the last three optional)
NPZ_KEYS = ("X", "y", "X_test", "y_test", "class_names")
#: lower-case names read as the inputs' (``x`` as a targets file names them, ``ddm.data.targets``)
NPZ_ALIASES = {"x": "X", "x_test": "X_test"}


def load_npz(path: str | Path | None, seed: int = 0) -> Dataset:
    """The ``npz`` dataset: arrays ``X`` and ``y`` (optionally ``X_test``, ``y_test`` and ``class_names``; ``x`` and
    ``x_test`` are read as ``X`` and ``X_test``) from a numpy ``.npz`` file (``path``; a folder means its
    ``data.npz``), read without unpickling anything and then treated as :func:`from_arrays` treats arrays (``seed``:
    its held-out test split's)."""
    if not path:
        raise DataError("the npz dataset reads a numpy .npz file: give its path with --data-dir FILE.npz "
                        f"(data.data_dir); it holds {', '.join(NPZ_KEYS[:2])} and optionally "
                        f"{', '.join(NPZ_KEYS[2:])} (np.savez(FILE, X=X, y=y))")
    file = Path(path)
    if file.is_dir():
        file = file / "data.npz"
    if not file.is_file():
        where = "" if file.is_absolute() else f"; a relative path is read from the current directory, {Path.cwd()}"
        raise DataError(f"no .npz file at {file} (the npz dataset's data.data_dir{where})")
    try:
        with np.load(file, allow_pickle=False) as f:
            both = [f"{a} and {b}" for a, b in NPZ_ALIASES.items() if a in f.files and b in f.files]
            if both:
                raise DataError(f"{file} holds both {', '.join(both)}: keep one of each (X and X_test, or x and "
                                "x_test)")
            arrays = {NPZ_ALIASES.get(k, k): f[k] for k in f.files if NPZ_ALIASES.get(k, k) in NPZ_KEYS}
            unknown = sorted(k for k in f.files if NPZ_ALIASES.get(k, k) not in NPZ_KEYS)
    except ValueError as exc:  # an object array, which only unpickling would read
        raise DataError(f"{file} holds an array that needs unpickling, which ddm never does ({exc}): save numeric "
                        "arrays (and class_names as strings)") from None
    missing = [k for k in NPZ_KEYS[:2] if k not in arrays]
    if missing:
        raise DataError(f"{file} holds no {' or '.join(missing)} (it holds {', '.join(sorted(arrays) + unknown)}): "
                        f"save np.savez(FILE, X=X, y=y)")
    if unknown:
        log.warning("%s: arrays %s are not read (the npz dataset reads %s)", file, unknown, ", ".join(NPZ_KEYS))
    names = [str(n) for n in arrays["class_names"]] if "class_names" in arrays else None
    if arrays["y"].dtype.kind in "US":  # class names as labels: indices in class_names' order, or sorted
        labels = [arrays["y"]] + ([arrays["y_test"]] if "y_test" in arrays else [])
        if any(y.dtype.kind not in "US" for y in labels):
            raise DataError(f"{file}: y holds strings and y_test numbers: save both as class names or both as "
                            "class indices")
        seen = sorted(set(np.concatenate([y.astype(str) for y in labels]).tolist()))
        if names is None:
            names = seen
            log.info("%s: y holds class names; classes 0..%d are %s in sorted order", file, len(names) - 1,
                     ", ".join(names[:10]) + (", ..." if len(names) > 10 else ""))
        unknown_labels = sorted(set(seen) - set(names))
        if unknown_labels:
            raise DataError(f"{file}: labels {unknown_labels[:10]} are not in class_names {names[:10]}"
                            f"{' ...' if len(names) > 10 else ''}: add them, or leave class_names out")
        index = {n: i for i, n in enumerate(names)}
        for key in ("y", "y_test"):
            if key in arrays:
                arrays[key] = np.array([index[str(v)] for v in arrays[key]], dtype=np.int64)
    return from_arrays(arrays["X"], arrays["y"], arrays.get("X_test"), arrays.get("y_test"), name="npz",
                       class_names=names, seed=seed)
