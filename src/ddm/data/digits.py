"""scikit-learn's embedded 8x8 handwritten digits (1,797 images): the default, needs no download.

Split: a fixed stratified 80/20 train/test split (``random_state=0``): 1,437 train, 360 test.
Normalisation: pixel values 0..16 are scaled to [0, 1], then standardised with mean 0.3 and
std 0.4 (rounded statistics of the training pixels).
"""

from __future__ import annotations

import numpy as np
import torch

from ddm.data.dataset import Dataset, Split, normalise

MEAN = (0.3,)
STD = (0.4,)


def load_digits_dataset() -> Dataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = bunch.images.astype(np.float32) / 16.0
    labels = bunch.target.astype(np.int64)
    idx = np.arange(len(labels))
    tr, te = train_test_split(idx, test_size=0.2, stratify=labels, random_state=0)
    tr, te = np.sort(tr), np.sort(te)
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
