"""A fixed seed trains to bit-identical parameters with 1 and with 2 threads (``fastcnn.runtime``).

The numba kernels split work by image (or image row) and reduce ``g_k``/``g_b``
through per-image partial sums added in image order, and the numba backend runs
BLAS single-threaded, so no floating-point sum depends on the thread count.
"""

from __future__ import annotations

import numpy as np
import pytest

from fastcnn import CnnModel, runtime
from fastcnn.datasets.base import ArrayDataset

numba = pytest.importorskip("numba")

HCONFIGS = [
    ["conv", {"ksize": 3, "chn": 8}],
    ["max", {"stride": 2}],
    ["conv", {"ksize": [2, 3], "chn": 6, "stride": 2}],  # even, non-square, strided: the im2col path
    ["avg", {"ksize": 2, "stride": 1}],
    16,
]


def digits_subset() -> ArrayDataset:
    """300 of scikit-learn's 8x8 digits, a fresh dataset (its shuffle RNG starts anew)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    xs = (digits.images[:300] / 16.0).astype(np.float32)[..., None]
    ys = np.eye(10, dtype=np.float32)[digits.target[:300]]
    return ArrayDataset("digits300", xs, ys, "select", [str(i) for i in range(10)], seed=5)


def train_with_threads(threads: int) -> dict[str, np.ndarray]:
    runtime.set_num_threads(threads)
    try:
        model = CnnModel("det", digits_subset(), None, HCONFIGS, backend="numba", seed=3)
        model.train(epoch_count=2, batch_size=32, learning_rate=0.003, progress=False)
        assert numba.get_num_threads() == threads  # the model ran on the count set
    finally:
        runtime.set_num_threads(None)
    return {key: value.copy() for key, value in model.params.items()}


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs at least 2 numba threads")
def test_parameters_bit_identical_with_one_and_two_threads():
    one = train_with_threads(1)
    two = train_with_threads(2)
    assert one.keys() == two.keys()
    for key in one:
        assert np.array_equal(one[key], two[key]), f"{key} differs between 1 and 2 threads"
    # the model really trained: parameters moved away from a fresh model's
    fresh = CnnModel("det", digits_subset(), None, HCONFIGS, backend="numba", seed=3).params
    assert any(not np.array_equal(fresh[key], one[key]) for key in one)
