"""Questions about any input: turn what a user has into the :class:`Split` that ``attribute`` takes.

* :func:`as_split`: a tensor or numpy array (``[N, C, H, W]``, ``[N, H, W]`` or ``[N, D]``), optionally with
  labels; without labels each input is asked about the class the model predicts for it.
* :func:`read_targets_file`: ``.npy`` (inputs), ``.npz`` / ``.safetensors`` (``x`` and optional ``y``), or a
  folder of images (``.png``, ``.jpg``, ``.jpeg``, ``.bmp``; needs Pillow). A folder whose images lie in one
  subfolder per class (``cat/1.png``, ``dog/2.png``: torchvision's ``ImageFolder`` layout) gives its images the
  subfolders' classes, each named as the dataset names its classes or by its index.

Id space: a target's id is its row in what was passed (the file's row, or the folder's sorted file order, class
subfolders in sorted order), as ``test_index`` is a row of the test split for ``--targets``.

Value ranges: float arrays are taken as model inputs (normalised like the training data); ``uint8`` arrays
and image files are raw pixels, scaled to [0, 1] and normalised with the dataset's mean and std. For a dataset of
feature vectors (``[D, 1, 1]`` samples: the ``npz`` dataset, ``from_arrays`` of ``[N, D]``) a targets file holds raw
features, as the data file did, standardised here with the training split's mean and std per feature.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ddm import devices
from ddm.data.arrays import _images, _labels, _tensor
from ddm.data.dataset import Split
from ddm.exceptions import DataError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def as_split(x: Any, y: Any = None, model: nn.Module | None = None,
             image_shape: tuple[int, int, int] | None = None) -> Split:
    """A :class:`Split` of ``x`` (rows = target ids). Without ``y``, the labels are ``model``'s predictions."""
    if isinstance(x, Split):
        return x
    if isinstance(x, tuple) and len(x) == 2 and y is None:
        x, y = x
    xt = _images(_tensor(x, "targets"), "targets").float()
    if image_shape is not None and tuple(xt.shape[1:]) != tuple(image_shape):
        raise DataError(f"targets have shape {tuple(xt.shape[1:])} per sample; the model takes {tuple(image_shape)} "
                        "(same channels and size as the training data)")
    if y is None:
        if model is None:
            raise DataError("targets without labels need the model to predict them")
        yt = devices.predict(model, xt).argmax(1)
    else:
        yt = _labels(_tensor(y, "target labels"), len(xt), "target labels")
    return Split(xt, yt)


def _raw_pixels(a: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """Raw pixels ``[N, H, W]``, ``[N, C, H, W]`` or channel-last ``[N, H, W, C]`` in 0..255 -> normalised
    ``[N, C, H, W]`` (the layouts as :func:`ddm.data.arrays._images` reads them)."""
    x = _images(torch.from_numpy(a.astype(np.float32) / 255.0), "raw pixels").numpy()
    m = np.asarray(mean, dtype=np.float32).reshape(1, -1, 1, 1)
    s = np.asarray(std, dtype=np.float32).reshape(1, -1, 1, 1)
    return (x - m) / s


def read_targets_file(path: str | Path, image_shape: tuple[int, int, int], mean: tuple[float, ...],
                      std: tuple[float, ...], class_names: list[str] | None = None,
                      num_classes: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Inputs ``[N, C, H, W]`` and labels (or None) from a file or a folder of images (module doc); a folder of
    class subfolders is labelled by ``class_names`` (or the classes' indices below ``num_classes``)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"--targets-file {path}: no such file or folder")
    y: Any = None
    if path.is_dir():
        return _read_folder(path, image_shape, mean, std, class_names, num_classes)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        x: Any = np.load(path, allow_pickle=False)
    elif suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            if "x" not in z:
                raise DataError(f"{path}: an .npz of targets needs an array named 'x' (and optionally 'y'); "
                                f"found {sorted(z.keys())}")
            x, y = z["x"], (z["y"] if "y" in z else None)
    elif suffix == ".safetensors":
        from safetensors.torch import load_file

        t = load_file(str(path))
        if "x" not in t:
            raise DataError(f"{path}: a .safetensors of targets needs a tensor named 'x' (and optionally 'y'); "
                            f"found {sorted(t)}")
        x, y = t["x"].numpy(), (t["y"].numpy() if "y" in t else None)
    elif suffix in IMAGE_SUFFIXES:
        return _read_images([path], image_shape, mean, std), None
    else:
        raise DataError(f"--targets-file {path}: use .npy, .npz, .safetensors, an image or a folder of images")
    x = np.asarray(x)
    if tuple(image_shape[1:]) == (1, 1) and x.ndim == 2 and x.dtype.kind in "iuf":
        # raw features, as the dataset's own file holds them: standardised as its training split was
        x = (x.astype(np.float32) - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    elif x.dtype == np.uint8:
        x = _raw_pixels(x, mean, std)
    xt = _images(_tensor(x, str(path)), str(path)).float()
    return xt, (torch.as_tensor(y) if y is not None else None)


def target_files(path: str | Path) -> list[str] | None:
    """The file behind each row :func:`read_targets_file` reads from ``path``: a folder's images in their sorted
    order, or the one image file; None for an array file (its rows are its own)."""
    path = Path(path)
    if path.is_dir():
        files = _images_in(path)
        if files:
            return [p.name for p in files]
        return [f"{d.name}/{p.name}" for d in _class_folders(path) for p in _images_in(d)]
    return [path.name] if path.suffix.lower() in IMAGE_SUFFIXES else None


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _class_folders(folder: Path) -> list[Path]:
    """The subfolders of ``folder`` that hold images (a folder of class subfolders), sorted by name."""
    return sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".") and _images_in(d))


def _skipped(folder: Path, files: list[Path]) -> None:
    others = sorted(p.name for p in folder.iterdir() if p.is_file() and p not in files)
    if others:
        log.warning("%s: %d file(s) skipped, not images (%s): %s%s", folder, len(others), ", ".join(IMAGE_SUFFIXES),
                    ", ".join(others[:5]), ", ..." if len(others) > 5 else "")


def _class_index(name: str, class_names: list[str] | None, num_classes: int | None) -> int | None:
    """A class subfolder's class: its name among ``class_names`` (exactly, else alike in letters and digits
    alone, so that ``t-shirt_top`` names "T-shirt/top", which no folder can be called), else an index below
    ``num_classes``."""
    if class_names is not None:
        if name in class_names:
            return class_names.index(name)
        alike = [i for i, c in enumerate(class_names) if _letters(c) == _letters(name)]
        if len(alike) == 1:
            return alike[0]
    if name.isdigit() and (num_classes is None or int(name) < num_classes):
        return int(name)
    return None


def _letters(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def _read_folder(folder: Path, image_shape: tuple[int, int, int], mean: tuple[float, ...], std: tuple[float, ...],
                 class_names: list[str] | None = None,
                 num_classes: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    files = _images_in(folder)
    if files:
        _skipped(folder, files)
        return _read_images(files, image_shape, mean, std), None
    subfolders = _class_folders(folder)
    if not subfolders:
        raise DataError(f"{folder} holds no images ({', '.join(IMAGE_SUFFIXES)}), neither directly nor in class "
                        "subfolders (one per class, named as the dataset names its classes or by class index)")
    classes = {d.name: _class_index(d.name, class_names, num_classes) for d in subfolders}
    unknown = [name for name, c in classes.items() if c is None]
    if unknown:
        names = (f"the dataset's class names ({', '.join(class_names[:12])}{', ...' if len(class_names) > 12 else ''})"
                 if class_names else "")
        index = f"a class index 0..{num_classes - 1}" if num_classes else "a class index"
        raise DataError(f"{folder}: the subfolder(s) {', '.join(unknown)} name no class of the model; name each "
                        f"class subfolder {names + ' or ' if names else ''}{index}, or put the images in {folder} "
                        "itself to ask about the class the model predicts")
    files, labels = [], []
    for d in subfolders:
        inside = _images_in(d)
        _skipped(d, inside)
        files += inside
        labels += [classes[d.name]] * len(inside)
    return _read_images(files, image_shape, mean, std), torch.tensor(labels, dtype=torch.long)


def _read_images(files: list[Path], image_shape: tuple[int, int, int], mean: tuple[float, ...],
                 std: tuple[float, ...]) -> torch.Tensor:
    try:
        from PIL import Image
    except ImportError:
        raise DataError("reading image files needs Pillow: pip install 'ddm[images]'") from None
    c, h, w = image_shape
    mode = "L" if c == 1 else "RGB"
    arrays, resized, converted = [], 0, 0
    for f in files:
        with Image.open(f) as opened:
            resized += opened.size != (w, h)
            converted += opened.mode != mode
            im = opened.convert(mode).resize((w, h))
            arrays.append(np.asarray(im, dtype=np.uint8))
    changes = ([f"{resized} of {len(files)} image(s) resized to {w}x{h}"] if resized else []) + (
        [f"{converted} of {len(files)} converted to {'grayscale' if c == 1 else 'RGB'}"] if converted else [])
    if changes:
        log.warning("%s, the model's input: the attribution answers for the images as the model sees them",
                    " and ".join(changes))
    return torch.from_numpy(_raw_pixels(np.stack(arrays), mean, std))
