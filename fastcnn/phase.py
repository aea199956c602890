"""Training or inference: the one switch the dropout, noise and batch-norm layers read.

The book keeps a model attribute ``is_training`` that ``train_step`` sets to True
around forward and backprop and that is False everywhere else. fastcnn keeps the
same rule, explicitly and per thread: inference is the default, and only code
inside ``with training():`` runs the layers in training mode. ``CnnModel``
enters it in ``compute_gradients`` and ``compute_step`` (so in ``train``); its
``forward``, ``predict``, ``test``, ``visualize`` and the validation during
training run outside it, so dropout and noise are off there and batch norm uses
its moving statistics. The flag lives in thread-local storage: a ``predict`` in
another thread while a model trains still runs in inference mode.
"""

from __future__ import annotations

import contextlib
import threading

_local = threading.local()


def is_training() -> bool:
    """True inside ``with training():`` in this thread."""
    return getattr(_local, "training", False)


@contextlib.contextmanager
def training(on: bool = True):
    """Run the block in training mode (``on=False``: in inference mode); nests, restores."""
    previous = is_training()
    _local.training = bool(on)
    try:
        yield
    finally:
        _local.training = previous


def inference():
    """``training(False)``: the block runs in inference mode even inside a training block."""
    return training(False)
