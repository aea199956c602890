"""Deep Learning from Scratch's networks at test time, in float64 NumPy (NCHW), as oracles.

The book's layers written out with plain loops over kernel offsets (no im2col),
so they share no code with fastcnn: ``Convolution`` (cross-correlation,
symmetric zero padding), ``Relu``, ``Pooling`` (max, window 2, stride 2,
remainder dropped), ``Affine`` (flattens each sample in ``(c, h, w)`` order)
and the book's non-inverted ``Dropout`` (test time: ``x * (1 - dropout_ratio)``).
A network is a list of steps: ``("conv", pad)``, ``("relu",)``, ``("pool",)``,
``("affine",)``, ``("dropout", ratio)``; conv and affine steps take the next
``W{i}``, ``b{i}`` of a ``save_params`` dict.
"""

from __future__ import annotations

import pickle

import numpy as np

SIMPLE_CONVNET = [("conv", 0), ("relu",), ("pool",), ("affine",), ("relu",), ("affine",)]
DEEP_CONVNET = [
    ("conv", 1), ("relu",), ("conv", 1), ("relu",), ("pool",),
    ("conv", 1), ("relu",), ("conv", 2), ("relu",), ("pool",),
    ("conv", 1), ("relu",), ("conv", 1), ("relu",), ("pool",),
    ("affine",), ("relu",), ("dropout", 0.5), ("affine",), ("dropout", 0.5),
]


def conv(x, w, b, pad):
    """``x (N, C, H, W)``, ``w (FN, C, FH, FW)``, ``b (FN,)`` -> ``(N, FN, OH, OW)``, stride 1."""
    n, _, h, wd = x.shape
    fn, _, fh, fw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh, ow = h + 2 * pad - fh + 1, wd + 2 * pad - fw + 1
    y = np.zeros((n, fn, oh, ow))
    for i in range(fh):
        for j in range(fw):
            y += np.einsum("nchw,fc->nfhw", xp[:, :, i : i + oh, j : j + ow], w[:, :, i, j])
    return y + b[None, :, None, None]


def max_pool(x, k=2):
    """Max over ``k x k`` windows with stride ``k``; rows/columns left over are dropped."""
    oh, ow = x.shape[2] // k, x.shape[3] // k
    y = np.full((*x.shape[:2], oh, ow), -np.inf)
    for i in range(k):
        for j in range(k):
            y = np.maximum(y, x[:, :, i : i + k * oh : k, j : j + k * ow : k])
    return y


def predict(net, params, x_nchw):
    """The book's ``predict(x, train_flg=False)`` for ``net`` with ``params``."""
    x, i = np.asarray(x_nchw, np.float64), 0
    for step in net:
        if step[0] in ("conv", "affine"):
            i += 1
            w, b = params[f"W{i}"], params[f"b{i}"]
            x = conv(x, w, b, step[1]) if step[0] == "conv" else x.reshape(len(x), -1) @ w + b
        elif step[0] == "relu":
            x = np.maximum(x, 0)
        elif step[0] == "pool":
            x = max_pool(x)
        elif step[0] == "dropout":
            x = x * (1.0 - step[1])
        else:
            raise ValueError(f"unknown step {step!r}")
    return x


def random_params(net, input_chw, outputs, rng):
    """``W1, b1, ...`` for ``net`` in float64 (He scale, random biases), as the book stores them."""
    x = np.zeros((1, *input_chw))
    params, i, widths = {}, 0, iter(_affine_widths(net, outputs))
    for step in net:
        if step[0] == "conv":
            i += 1
            chn = {1: 30} if net is SIMPLE_CONVNET else {1: 16, 2: 16, 3: 32, 4: 32, 5: 64, 6: 64}
            w = rng.normal(0, np.sqrt(2 / (x.shape[1] * 9)), (chn[i], x.shape[1], *_ksize(net)))
            params[f"W{i}"], params[f"b{i}"] = w, rng.normal(0, 0.1, chn[i])
            x = conv(x, w, params[f"b{i}"], step[1])
        elif step[0] == "affine":
            i += 1
            fan_in, width = x[0].size, next(widths)
            params[f"W{i}"] = rng.normal(0, np.sqrt(2 / fan_in), (fan_in, width))
            params[f"b{i}"] = rng.normal(0, 0.1, width)
            x = np.zeros((1, width))
        elif step[0] == "pool":
            x = max_pool(x)
    return params


def _ksize(net):
    return (5, 5) if net is SIMPLE_CONVNET else (3, 3)


def _affine_widths(net, outputs):
    return (100, outputs) if net is SIMPLE_CONVNET else (50, outputs)


def save_params(params, path, protocol=pickle.DEFAULT_PROTOCOL):
    """The book's ``save_params``: ``pickle.dump`` of the dict."""
    with open(path, "wb") as f:
        pickle.dump(dict(params), f, protocol=protocol)
