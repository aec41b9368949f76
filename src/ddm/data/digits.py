"""scikit-learn's embedded 8x8 handwritten digits (1,797 images): the default, needs no download.

Split: a fixed stratified 80/20 train/test split (``train_test_split(..., test_size=0.2, stratify=labels,
random_state=0)``): 1,437 train, 360 test. Normalisation: pixel values 0..16 are scaled to [0, 1], then
standardised with mean 0.3 and std 0.4 (rounded statistics of the training pixels).

Every command on a workspace loads its data, and importing scikit-learn (``sklearn.datasets`` and
``sklearn.model_selection`` pull in SciPy's statistics) takes about 1.8 s of a command's 4 s on 2 CPU cores. So the
images are read from the file ``load_digits`` reads (``sklearn/datasets/data/digits.csv.gz``, located without
importing scikit-learn) and the split is :data:`TEST_ROWS`, the rows that call puts in the test set, stored once
(``tests/test_data.py`` checks both against scikit-learn's own functions). Where the file is missing (a
scikit-learn that stores it elsewhere), ``load_digits`` itself is used.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

from ddm.data.dataset import Dataset, Split, normalise

MEAN = (0.3,)
STD = (0.4,)
NUM_SAMPLES = 1797

#: the test rows of ``train_test_split(np.arange(1797), test_size=0.2, stratify=labels, random_state=0)``, as a
#: bitmask over the 1,797 rows (``np.packbits``, hex): :func:`split_mask` reads it, :func:`test_rows_hex` makes it
TEST_ROWS = (
    "000004883524104000064100934205001a00080100240028062c12001000940a009019120420f8a0028110a000080a8820441524494240"
    "a00a0000004004d80000818020004805c400104008a0100005404800301000020ec409000224840083a8013c20a6980a0000000b08400804"
    "a0184802024041c1008004404684376a810216004480004042a0a4180a5000840b8561c608108008004c80c02004068e00010882008100"
    "380803c008190000100e01008410a0210033282904c044c080680e0102830082008822a6402c24042108a860809081a00c02820242120138"
    "a41500"
)


def split_mask() -> np.ndarray:
    """``[1797]`` bool: True for the test rows (:data:`TEST_ROWS`)."""
    bits = np.frombuffer(bytes.fromhex(TEST_ROWS), dtype=np.uint8)
    return np.unpackbits(bits)[:NUM_SAMPLES].astype(bool)


def test_rows_hex(labels: np.ndarray) -> str:
    """:data:`TEST_ROWS` made again with scikit-learn from the digits' ``labels``."""
    from sklearn.model_selection import train_test_split

    _, te = train_test_split(np.arange(len(labels)), test_size=0.2, stratify=labels, random_state=0)
    mask = np.zeros(len(labels), dtype=bool)
    mask[te] = True
    return np.packbits(mask).tobytes().hex()


def digits_file() -> Path | None:
    """scikit-learn's ``digits.csv.gz`` (64 pixel columns, then the label), found without importing scikit-learn;
    None where it is not there."""
    spec = importlib.util.find_spec("sklearn")
    for root in (spec.submodule_search_locations or []) if spec is not None else []:
        path = Path(root) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            return path
    return None


def read_digits() -> tuple[np.ndarray, np.ndarray]:
    """``images [1797, 8, 8]`` (float64, 0..16) and ``labels [1797]`` (int64), as ``sklearn.datasets.load_digits``
    gives them."""
    path = digits_file()
    if path is None:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        return bunch.images, bunch.target.astype(np.int64)
    data = np.loadtxt(path, delimiter=",")
    return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(np.int64)


def load_digits_dataset() -> Dataset:
    raw, labels = read_digits()
    images = raw.astype(np.float32) / 16.0
    test = split_mask()
    tr, te = np.flatnonzero(~test), np.flatnonzero(test)
    x = normalise(images, MEAN, STD)
    y = torch.as_tensor(labels)
    return Dataset(
        name="digits",
        train=Split(x[tr], y[tr]),
        test=Split(x[te], y[te]),
        num_classes=10,
        mean=MEAN,
        std=STD,
        class_names=[str(i) for i in range(10)],
    )
