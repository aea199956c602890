"""Optimizers with the update rules of the seed (Deep Learning from Scratch, ch. 6-7).

``update(params, grads)`` takes two dicts keyed alike (``'layer03_conv/k'`` ->
array) and updates ``params`` in place; the optimizer keeps its own state
(velocities, moments, step count) keyed the same way. A model hands its
optimizer its bound backend once (``bind(ops)``): Adam then runs that
backend's fused update (numba: one pass over each array, on every core); an
optimizer no model has bound runs NumPy's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .kernels import elementwise


@dataclass(frozen=True)
class WeightDecay:
    """L2/L1 weight decay of the parameters ``keys``, decoupled from the optimizer's step
    (the book's chapter 8, ``fastcnn.regularize``): every update first runs
    ``p -= lr * (l2 * p + l1 * sign(p))`` on each of them, with ``p`` before the update (the
    optimizer's own step does not read ``p``), so together
    ``p -= lr * (step(g) + l2 * p + l1 * sign(p))``; ``sign(0) = 0``. The cost the model
    reports adds ``penalty(params)``. The default decays nothing."""

    l2: float = 0.0
    l1: float = 0.0
    keys: tuple = ()

    @property
    def active(self) -> bool:
        return bool(self.keys) and bool(self.l2 or self.l1)

    def apply(self, params: dict, lr: float) -> None:
        if not self.active:
            return
        for key in self.keys:
            p = params[key]
            step = self.l2 * p if self.l2 else np.zeros_like(p)
            if self.l1:
                step += self.l1 * np.sign(p)
            p -= lr * step

    def penalty(self, params: dict) -> float:
        """``l2 * sum(p**2) / 2 + l1 * sum(|p|)`` over ``keys`` (float64 sums)."""
        total = 0.0
        for key in self.keys if self.active else ():
            p = params[key].ravel()
            if self.l2:
                total += self.l2 * 0.5 * float(np.dot(p, p.astype(np.float64)))
            if self.l1:
                total += self.l1 * float(np.abs(p).sum(dtype=np.float64))
        return total


class Optimizer:
    """Base: a learning rate and an in-place ``update``."""

    #: the elementwise steps the update runs (``fastcnn.kernels.ops.Ops``; NumPy's until bound)
    ops = elementwise
    #: weight decay run at the start of every update (``set_decay``; none by default)
    decay = WeightDecay()

    def __init__(self, lr: float = 0.01):
        self.lr = float(lr)

    def bind(self, ops) -> None:
        """Run the updates with ``ops``' elementwise steps (a model binds its backend's)."""
        self.ops = ops

    def set_decay(self, decay: WeightDecay) -> None:
        """Decay ``decay.keys`` at every update (a model with ``l2_decay``/``l1_decay`` sets it)."""
        self.decay = decay

    def update(self, params: dict, grads: dict) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(lr={self.lr})"


def _state(states: dict, key: str, param: np.ndarray) -> np.ndarray:
    """The state array of ``key``, zeros like ``param`` on first use.

    (Not ``setdefault(key, np.zeros_like(...))``: that builds and drops a zero
    array on every update, two per parameter per step for Adam.)
    """
    state = states.get(key)
    if state is None:
        state = states[key] = np.zeros_like(param)
    return state


class SGD(Optimizer):
    """``w -= lr * g``."""

    def update(self, params, grads):
        self.decay.apply(params, self.lr)
        for key, g in grads.items():
            params[key] -= self.lr * g


class Momentum(Optimizer):
    """``v = momentum * v - lr * g; w += v``."""

    def __init__(self, lr=0.01, momentum=0.9):
        super().__init__(lr)
        self.momentum = float(momentum)
        self.v: dict[str, np.ndarray] = {}

    def update(self, params, grads):
        self.decay.apply(params, self.lr)
        for key, g in grads.items():
            v = _state(self.v, key, params[key])
            v *= self.momentum
            v -= self.lr * g
            params[key] += v


class AdaGrad(Optimizer):
    """``h += g*g; w -= lr * g / sqrt(h + 1e-7)``."""

    def __init__(self, lr=0.01, eps=1e-7):
        super().__init__(lr)
        self.eps = eps
        self.h: dict[str, np.ndarray] = {}

    def update(self, params, grads):
        self.decay.apply(params, self.lr)
        for key, g in grads.items():
            h = _state(self.h, key, params[key])
            h += g * g
            params[key] -= self.lr * g / np.sqrt(h + self.eps)


class Adam(Optimizer):
    """Adam with the seed's folded bias correction:
    ``lr_t = lr * sqrt(1 - beta2**t) / (1 - beta1**t)``,
    ``w -= lr_t * m / (sqrt(v) + 1e-7)``.
    """

    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999, eps=1e-7):
        super().__init__(lr)
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), eps
        self.iter = 0
        self.m: dict[str, np.ndarray] = {}
        self.v: dict[str, np.ndarray] = {}

    def update(self, params, grads):
        self.decay.apply(params, self.lr)
        self.iter += 1
        lr_t = self.lr * np.sqrt(1.0 - self.beta2**self.iter) / (1.0 - self.beta1**self.iter)
        for key, g in grads.items():
            m = _state(self.m, key, params[key])
            v = _state(self.v, key, params[key])
            self.ops.adam_update(params[key], g, m, v, lr_t, self.beta1, self.beta2, self.eps)


#: name -> optimizer class (the seed's ``optimizer_class_dict``)
OPTIMIZERS: dict[str, type[Optimizer]] = {"sgd": SGD, "momentum": Momentum, "adagrad": AdaGrad, "adam": Adam}


def make_optimizer(optimizer, use_adam: bool = True) -> Optimizer:
    """An optimizer from a name, an object, or (None) ``use_adam``: Adam or plain SGD."""
    if optimizer is None:
        return Adam() if use_adam else SGD()
    if isinstance(optimizer, str):
        cls = OPTIMIZERS.get(optimizer.lower())
        if cls is None:
            raise ValueError(f"unknown optimizer {optimizer!r}; valid: {', '.join(OPTIMIZERS)}")
        return cls()
    if callable(getattr(optimizer, "update", None)) and hasattr(optimizer, "lr"):
        return optimizer
    raise TypeError(
        f"optimizer must be a name ({', '.join(OPTIMIZERS)}) or an object with .lr and "
        f".update(params, grads), got {type(optimizer).__name__}"
    )
