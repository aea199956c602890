"""Small synthetic datasets and digits for the model tests."""

from __future__ import annotations

import numpy as np

from fastcnn.datasets.base import ArrayDataset


def tiny_dataset(n=30, shape=(6, 6, 2), classes=3, mode="select", seed=0, name="tiny"):
    """Random inputs whose class depends on the mean of the top half (learnable)."""
    rng = np.random.default_rng(seed)
    xs = rng.random((n, *shape)).astype(np.float32)
    labels = rng.integers(0, classes, n)
    xs[:, : shape[0] // 2] += labels[:, None, None, None] * 0.5
    if mode == "select":
        ys = np.eye(classes, dtype=np.float32)[labels]
        names = [f"c{i}" for i in range(classes)]
    elif mode == "binary":
        ys = (labels[:, None] == np.arange(classes)).astype(np.float32)
        names = [f"c{i}" for i in range(classes)]
    elif mode == "regression":
        ys = (1.0 + labels[:, None] + xs.mean(axis=(1, 2, 3))[:, None]).astype(np.float32)
        names = None
    elif mode == "dual_select":
        other = rng.integers(0, 2, n)
        ys = np.concatenate([np.eye(2)[other], np.eye(classes)[labels]], axis=1).astype(np.float32)
        names = (["d0", "d1"], [f"c{i}" for i in range(classes)])
    else:
        raise ValueError(mode)
    return ArrayDataset(name, xs, ys, mode, names, seed=seed)


def digits_dataset(seed=1234):
    """scikit-learn digits as 8x8x1 in 0..1 with one-hot targets (the demo's data)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    xs = (d.images / 16.0).astype(np.float32)[..., None]
    ys = np.eye(10, dtype=np.float32)[d.target]
    return ArrayDataset("digits", xs, ys, "select", [str(i) for i in range(10)], seed=seed)


def numeric_grad(f, array, index, eps: float) -> float:
    """Central difference of the scalar ``f()`` in ``array[index]`` (restored afterwards)."""
    old = array[index]
    array[index] = old + eps
    up = f()
    array[index] = old - eps
    down = f()
    array[index] = old
    return (up - down) / (2 * eps)


def assert_sampled_grads(loss, arrays, grads, rng, count: int, eps: float = 1e-6, tol: float = 1e-6) -> None:
    """At ``count`` random positions of each of ``arrays``, the central difference of
    ``loss(*arrays)`` equals that array's analytic gradient in ``grads`` within
    ``tol * max(1, |grad|)`` (the arrays are changed in place and restored)."""
    for index, (array, grad) in enumerate(zip(arrays, grads, strict=True)):
        for flat in rng.choice(array.size, min(count, array.size), replace=False):
            pos = np.unravel_index(flat, array.shape)
            num = numeric_grad(lambda: loss(*arrays), array, pos, eps)
            assert abs(num - grad[pos]) < tol * max(1.0, abs(grad[pos])), (index, pos)
