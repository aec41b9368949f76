"""Datasets: ``load(name)`` returns a :class:`Dataset` with normalised ``train`` and ``test`` splits.

=============== ======================================================================
name            source
=============== ======================================================================
digits          scikit-learn's embedded 8x8 digits (default; no download)
fashion-mnist   IDX(.gz) files; default ``/usr/share/datasets/fashion-mnist`` (Debian)
mnist           IDX(.gz) files in ``data_dir``; else torchvision when installed
cifar10/100     official binary files in ``data_dir``; else torchvision when installed
tinyimagenet    the unpacked ``tiny-imagenet-200`` folder in ``data_dir`` (Pillow: the ``images`` extra); its
                labelled ``val`` images are the test split (:mod:`ddm.data.tinyimagenet`)
npz             your own arrays in a numpy ``.npz`` file (``data_dir``: its path): ``X``, ``y`` and optionally
                ``X_test``, ``y_test``, ``class_names`` (:func:`ddm.data.arrays.load_npz`)
=============== ======================================================================
"""

from __future__ import annotations

from collections.abc import Callable

from ddm.config import DataConfig
from ddm.data.arrays import from_arrays, from_torch
from ddm.data.dataset import Dataset, Split, rows_cache, stratified_subset
from ddm.registry import Registry

DATASETS: Registry[Callable[[DataConfig], Dataset]] = Registry("dataset")


@DATASETS.register("digits")
def _digits(cfg: DataConfig) -> Dataset:
    from ddm.data.digits import load_digits_dataset

    return load_digits_dataset()


@DATASETS.register("fashion-mnist")
def _fashion(cfg: DataConfig) -> Dataset:
    from ddm.data.idx import load_idx_dataset

    return load_idx_dataset("fashion-mnist", cfg.data_dir)


@DATASETS.register("mnist")
def _mnist(cfg: DataConfig) -> Dataset:
    from ddm.data.idx import has_idx_files, load_idx_dataset
    from ddm.data.vision import _load_torchvision

    if has_idx_files(cfg.data_dir) or cfg.data_dir and not cfg.download:
        return load_idx_dataset("mnist", cfg.data_dir)
    return _load_torchvision("mnist", cfg.data_dir, cfg.download)


@DATASETS.register("cifar10")
def _cifar10(cfg: DataConfig) -> Dataset:
    from ddm.data.vision import load_cifar

    return load_cifar("cifar10", cfg.data_dir, cfg.download)


@DATASETS.register("cifar100")
def _cifar100(cfg: DataConfig) -> Dataset:
    from ddm.data.vision import load_cifar

    return load_cifar("cifar100", cfg.data_dir, cfg.download)


@DATASETS.register("tinyimagenet")
def _tinyimagenet(cfg: DataConfig) -> Dataset:
    from ddm.data.tinyimagenet import load_tinyimagenet

    # the subsets are chosen before decoding; load() then finds them already of their size
    return load_tinyimagenet(cfg.data_dir, cfg.train_size, cfg.test_size, cfg.seed)


@DATASETS.register("npz")
def _npz(cfg: DataConfig) -> Dataset:
    from ddm.data.arrays import load_npz

    return load_npz(cfg.data_dir, cfg.seed)


def load(name: str | DataConfig = "digits", **overrides: object) -> Dataset:
    """Load a dataset by name (or :class:`DataConfig`), applying the configured subsets."""
    cfg = name if isinstance(name, DataConfig) else DataConfig(name=name, **overrides)  # type: ignore[arg-type]
    ds = DATASETS.get(cfg.name)(cfg)
    ds.train = stratified_subset(ds.train, cfg.train_size, cfg.seed, "data.train_size")
    ds.test = stratified_subset(ds.test, cfg.test_size, cfg.seed, "data.test_size")
    return ds


__all__ = ["DATASETS", "Dataset", "Split", "from_arrays", "from_torch", "load", "rows_cache"]
