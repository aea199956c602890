"""Modes: how the output layer becomes a loss, a gradient, an accuracy and an estimate.

All take ``output [mb, outputs]`` (the output layer, no activation) and the
dataset's encoded targets ``y [mb, outputs]``. Losses are means over the
mini-batch, so gradients are divided by its size.
"""

from __future__ import annotations

import numpy as np

from .mathutil import sigmoid

EPS = 1e-7


def log_softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - x.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def softmax(x: np.ndarray) -> np.ndarray:
    return np.exp(log_softmax(x))


class Mode:
    """Base class; ``name`` is the key in ``MODES``."""

    name = ""

    def loss_grad(self, output, y) -> tuple[float, np.ndarray]:
        """``(mean loss, d loss / d output)``."""
        raise NotImplementedError

    def accuracy(self, output, y):
        raise NotImplementedError

    def estimate(self, output) -> np.ndarray:
        """What the model predicts: probabilities or values, shape of ``output``."""
        raise NotImplementedError


class Select(Mode):
    """One softmax over all outputs, cross-entropy loss, argmax accuracy."""

    name = "select"

    def loss_grad(self, output, y):
        log_p = log_softmax(output)
        loss = -np.sum(y * log_p) / len(output)
        return float(loss), ((np.exp(log_p) - y) / len(output)).astype(output.dtype)

    def accuracy(self, output, y):
        # a count over the batch size, not np.mean of booleans: the same value, 1 us against 5
        # at batch 10 (it runs every training step)
        return int(np.count_nonzero(output.argmax(axis=1) == np.asarray(y).argmax(axis=1))) / len(output)

    def estimate(self, output):
        return softmax(output)


class Binary(Mode):
    """Independent sigmoid per output, binary cross-entropy averaged over all entries."""

    name = "binary"

    def loss_grad(self, output, y):
        # log(1 + exp(x)) - x*y written so that it never overflows
        loss = np.mean(np.maximum(output, 0) - output * y + np.log1p(np.exp(-np.abs(output))))
        return float(loss), ((sigmoid(output) - y) / output.size).astype(output.dtype)

    def accuracy(self, output, y):
        return float(np.mean((output > 0) == (y > 0.5)))

    def estimate(self, output):
        return sigmoid(output)


class Regression(Mode):
    """Mean squared error; accuracy is the book's ``1 - mean(|out - y| / |y|)``
    (relative error, with ``|y|`` floored at 1e-7)."""

    name = "regression"

    def loss_grad(self, output, y):
        diff = output - y
        return float(np.mean(diff * diff)), (2 * diff / output.size).astype(output.dtype)

    def accuracy(self, output, y):
        return float(1 - np.mean(np.abs(output - y) / np.maximum(np.abs(y), EPS)))

    def estimate(self, output):
        return output


class DualSelect(Mode):
    """Two softmax heads over output columns ``[:n_domains]`` and ``[n_domains:]``.

    Loss = domain cross-entropy + object cross-entropy; accuracy is the pair
    ``(domain accuracy, object accuracy)``.
    """

    name = "dual_select"

    def __init__(self, dual_counts):
        if dual_counts is None or len(dual_counts) != 2 or min(dual_counts) <= 0:
            raise ValueError(
                f"dual_select needs the dataset's dual_counts (domains, objects), got {dual_counts!r}"
            )
        self.split = int(dual_counts[0])
        self.heads = (Select(), Select())

    def _parts(self, a):
        return a[:, : self.split], a[:, self.split :]

    def loss_grad(self, output, y):
        triples = zip(self.heads, self._parts(output), self._parts(y), strict=True)
        results = [h.loss_grad(o, t) for h, o, t in triples]
        return sum(r[0] for r in results), np.concatenate([r[1] for r in results], axis=1)

    def accuracy(self, output, y):
        triples = zip(self.heads, self._parts(output), self._parts(y), strict=True)
        return tuple(h.accuracy(o, t) for h, o, t in triples)

    def estimate(self, output):
        return np.concatenate([softmax(o) for o in self._parts(output)], axis=1)


#: mode name -> factory taking the dataset
MODES = {
    "select": lambda dataset: Select(),
    "binary": lambda dataset: Binary(),
    "regression": lambda dataset: Regression(),
    "dual_select": lambda dataset: DualSelect(getattr(dataset, "dual_counts", None)),
}


def make_mode(mode, dataset) -> Mode:
    """A ``Mode`` from ``None`` (the dataset's own), a name, or a ``Mode`` object."""
    if mode is None:
        mode = getattr(dataset, "mode", None)
    if isinstance(mode, Mode):
        return mode
    if not isinstance(mode, str) or mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; valid modes: {', '.join(MODES)}")
    return MODES[mode](dataset)
