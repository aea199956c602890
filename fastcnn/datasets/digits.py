"""scikit-learn's bundled 8x8 handwritten digits: the embedded default dataset."""

from __future__ import annotations

import numpy as np

from .base import ArrayDataset

DIGIT_NAMES = [str(d) for d in range(10)]


class DigitsDataset(ArrayDataset):
    """1,797 grayscale 8x8 digits ``[n, 8, 8, 1]``, one-hot targets, mode ``select``.

    Ships with scikit-learn, so nothing downloads. Pixels (0..16 in the
    source) are scaled to 0..1 unless ``normalize=False``. ``shard``: keep only its rows (the
    whole set is in memory anyway: this saves a shard's memory, never reading).
    """

    def __init__(self, *, normalize: bool = True, split=(0.8, 0.05), seed: int = 1234, shard=None):
        from sklearn.datasets import load_digits

        digits = load_digits()
        xs = digits.images.astype(np.float32)[..., None]
        if normalize:
            xs /= 16.0
        ys = np.eye(10, dtype=np.float32)[digits.target]
        super().__init__("digits", xs, ys, "select", list(DIGIT_NAMES), split=split, seed=seed,
                         shard=shard)
