"""Tiny ImageNet (200 classes of 64x64 colour images) from the official folder, read with Pillow (no torchvision).

The layout is the one ``tiny-imagenet-200.zip`` unpacks to::

    tiny-imagenet-200/
        wnids.txt                      the 200 class ids (WordNet ids), one per line
        words.txt                      optional: "<wnid>\\t<names>", the class names
        train/<wnid>/images/*.JPEG     500 labelled images per class: the training split
        val/images/*.JPEG              10,000 images, labelled by
        val/val_annotations.txt        "<file>\\t<wnid>\\t..." lines: the test split
        test/                          unlabelled: not read

Labels are the positions of the sorted class ids (as a folder-per-class reader numbers them). A stratified subset
(``data.train_size``, ``data.test_size``) is chosen from the labels *before* any image is decoded, so asking for a
few thousand images does not read all 110,000; the rows it picks are the same as decoding everything and then
taking :func:`ddm.data.dataset.stratified_subset`. Images are normalised with the per-channel mean and standard
deviation of the training images read. A file that is missing, cannot be decoded or is not 64x64 is an error that
names it: nothing is resized or skipped silently.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ddm import progress
from ddm.data.dataset import Dataset, Split, normalise, stratified_indices
from ddm.exceptions import DataError, require

log = logging.getLogger(__name__)

FOLDER = "tiny-imagenet-200"
SIZE = (64, 64)
SUFFIXES = (".jpeg", ".jpg", ".png")
URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"


def find_root(data_dir: str | Path | None) -> Path:
    """The ``tiny-imagenet-200`` folder in or at ``data_dir`` (the one holding ``wnids.txt``)."""
    if not data_dir:
        raise DataError(f"tinyimagenet: pass --data-dir (data.data_dir) with the unpacked {FOLDER} folder "
                        f"(or the folder that holds it); it comes from {URL}")
    for folder in (Path(data_dir) / FOLDER, Path(data_dir)):
        if (folder / "wnids.txt").is_file():
            return folder
    raise DataError(f"tinyimagenet: no {FOLDER} folder (with wnids.txt, train/ and val/) in {data_dir}; download "
                    f"{URL}, unzip it there, and pass that folder as --data-dir")


def _read_lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def index(root: Path) -> tuple[list[str], list[str], list[Path], np.ndarray, list[Path], np.ndarray]:
    """Class ids (sorted), class names, and the training and test (``val``) files with their labels, read from the
    folder's text files and directory listing alone (no image opened)."""
    wnids = sorted(set(_read_lines(root / "wnids.txt")))
    if not wnids:
        raise DataError(f"tinyimagenet: {root / 'wnids.txt'} lists no classes")
    label = {w: i for i, w in enumerate(wnids)}
    names = dict.fromkeys(wnids, "")
    if (root / "words.txt").is_file():
        for line in _read_lines(root / "words.txt"):
            wnid, _, words = line.partition("\t")
            if wnid in names:
                names[wnid] = words.split(",")[0].strip()
    class_names = [names[w] or w for w in wnids]

    train_files: list[Path] = []
    train_y: list[int] = []
    for wnid in wnids:
        folder = root / "train" / wnid / "images"
        if not folder.is_dir():
            raise DataError(f"tinyimagenet: {folder} is missing: class {wnid} of wnids.txt has no training images "
                            f"(is the archive fully unpacked?)")
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in SUFFIXES)
        if not files:
            raise DataError(f"tinyimagenet: {folder} holds no images")
        train_files += files
        train_y += [label[wnid]] * len(files)

    notes = root / "val" / "val_annotations.txt"
    if not notes.is_file():
        raise DataError(f"tinyimagenet: {notes} is missing: the labelled val split is the test split")
    test_files: list[Path] = []
    test_y: list[int] = []
    for n, line in enumerate(_read_lines(notes), 1):
        fields = line.split("\t")
        if len(fields) < 2 or fields[1] not in label:
            raise DataError(f"tinyimagenet: {notes} line {n} names no class of wnids.txt: {line[:80]!r}")
        test_files.append(root / "val" / "images" / fields[0])
        test_y.append(label[fields[1]])
    return (wnids, class_names, train_files, np.asarray(train_y, dtype=np.int64), test_files,
            np.asarray(test_y, dtype=np.int64))


def _decode(path: Path) -> np.ndarray:
    image_mod: Any = require("PIL.Image", "images")
    try:
        with image_mod.open(path) as img:
            pixels = np.asarray(img.convert("RGB"), dtype=np.uint8)  # a few images are greyscale
    except FileNotFoundError as exc:
        raise DataError(f"tinyimagenet: {path} is missing") from exc
    except Exception as exc:  # Pillow raises several types for a corrupt file
        raise DataError(f"tinyimagenet: {path} could not be decoded ({exc})") from exc
    if pixels.shape[:2] != SIZE:
        raise DataError(f"tinyimagenet: {path} is {pixels.shape[1]}x{pixels.shape[0]}, not 64x64; this reader does "
                        "not resize")
    return pixels


def read_images(files: list[Path], desc: str, threads: int | None = None) -> np.ndarray:
    """``[N, 64, 64, 3]`` uint8 of ``files``, in order, decoded in ``threads`` threads (default: the CPUs, at most
    8)."""
    out = np.empty((len(files), *SIZE, 3), dtype=np.uint8)
    threads = threads or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max(1, threads)) as pool:
        for i, pixels in enumerate(progress.progress(pool.map(_decode, files), desc, total=len(files))):
            out[i] = pixels
    return out


def _normalise(images: np.ndarray, mean: np.ndarray, std: np.ndarray, chunk: int = 4096) -> torch.Tensor:
    """uint8 ``[N, H, W, 3]`` -> normalised float32 ``[N, 3, H, W]`` (:func:`ddm.data.dataset.normalise`), a chunk at
    a time: the whole training set's float64 copy would be 10 GB."""
    out = torch.empty((len(images), 3, *images.shape[1:3]), dtype=torch.float32)
    for a in range(0, len(images), chunk):
        out[a : a + chunk] = normalise(images[a : a + chunk] / 255.0, tuple(mean), tuple(std))
    return out


def channel_stats(images: np.ndarray, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation of uint8 ``[N, H, W, 3]`` images on the [0, 1] scale."""
    total = np.zeros(3)
    squares = np.zeros(3)
    for a in range(0, len(images), chunk):
        x = images[a : a + chunk].reshape(-1, 3).astype(np.float64) / 255.0
        total += x.sum(0)
        squares += (x * x).sum(0)
    count = max(1, len(images) * images.shape[1] * images.shape[2])
    mean = total / count
    return mean, np.sqrt(np.maximum(squares / count - mean * mean, 1e-12))


def load_tinyimagenet(data_dir: str | Path | None, train_size: int | None = None, test_size: int | None = None,
                      seed: int = 0) -> Dataset:
    """Tiny ImageNet from ``data_dir`` (see the module's docstring), only the stratified subsets' images decoded."""
    root = find_root(data_dir)
    wnids, class_names, train_files, train_y, test_files, test_y = index(root)
    splits = {}
    pixels = {}
    for name, files, y, size, field in (("train", train_files, train_y, train_size, "data.train_size"),
                                        ("test", test_files, test_y, test_size, "data.test_size")):
        rows = stratified_indices(torch.as_tensor(y), size, seed, field)
        log.info("tinyimagenet: decoding %d of %d %s images", len(rows), len(files), name)
        pixels[name] = read_images([files[i] for i in rows.tolist()], f"reading Tiny ImageNet {name}")
        splits[name] = (torch.as_tensor(y)[rows], rows)
    mean, std = channel_stats(pixels["train"])
    out = {name: Split(_normalise(pixels[name], mean, std), y, rows) for name, (y, rows) in splits.items()}
    return Dataset("tinyimagenet", out["train"], out["test"], len(wnids), tuple(float(v) for v in mean),
                   tuple(float(v) for v in std), class_names)
