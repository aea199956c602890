"""The book's chapter 8 outside the layers: the grammar of the regularization layers,
L2/L1 weight decay (``CnnModel(..., l2_decay=, l1_decay=)``) and the parameter histogram.

Grammar (checked when the hconfigs are parsed; every error names layer index and key):

- ``['dropout', {'keep_prob': p}]``: p in (0, 1], default 1.0 (a layer that does nothing).
- ``['noise', {'type': 'normal', 'mean': 0, 'std': 1.0, 'ratio': 1.0}]``: ``std >= 0``,
  ``ratio`` in [0, 1] (the probability, per mini-batch, that noise is added at all).
- ``['batch_normal', {'rescale': True, 'epsilon': 1e-10, 'exp_ratio': 0.001, 'exact': True}]``:
  ``epsilon > 0``, ``exp_ratio`` in (0, 1]; ``exact`` is fastcnn's (the full gradient;
  False: the book's simplified one, docs/regularization.md).
- ``['output']``: where the model puts its automatically sized output layer when layers
  must follow it (a dropout, as in Deep Learning from Scratch's DeepConvNet); see
  ``fastcnn.hconfig.place_output``.

Decay follows BOOK-CH8-9 section 3.2 with errata E1/E2 corrected: the cost adds
``l2 * sum(p**2) / 2 + l1 * sum(|p|)`` over every weight (``w`` of full layers, ``k`` of
conv layers, nested ones included; never biases or batch-norm values), and the
optimizer's update is decoupled: ``p -= lr * (step(g) + l2 * p + l1 * sign(p))``
(``fastcnn.optim.WeightDecay``).
"""

from __future__ import annotations

import numbers

import numpy as np

#: parameter names that decay and that the histogram shows (full ``w``, conv ``k``)
WEIGHT_NAMES = ("w", "k")
#: |p| at most this counts as "near 0" in ``show_param_dist`` (the book's 1e-5, inclusive)
NEAR_ZERO = 1e-5
#: the only noise type of the book
NOISE_TYPES = ("normal",)


# --------------------------------------------------------------------------
# grammar: typed getters (used by fastcnn.hconfig's checks and by the layers)
# --------------------------------------------------------------------------


def number(spec, key: str, default: float, low=None, high=None, low_open=False, high_open=False) -> float:
    """``settings[key]`` as a float within [low, high] (open ends as flagged)."""
    value = spec.settings.get(key, default)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise spec.error(key, f"must be a number, got {value!r}", TypeError)
    value = float(value)
    if not np.isfinite(value):
        raise spec.error(key, f"must be finite, got {value!r}")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        span = f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"
        raise spec.error(key, f"must be in {span}, got {value!r}")
    return value


def flag(spec, key: str, default: bool) -> bool:
    value = spec.settings.get(key, default)
    if not isinstance(value, (bool, np.bool_)):
        raise spec.error(key, f"must be True or False, got {value!r}", TypeError)
    return bool(value)


def keep_prob(spec) -> float:
    return number(spec, "keep_prob", 1.0, 0.0, 1.0, low_open=True)


def noise_settings(spec) -> tuple[float, float, float]:
    """``(mean, std, ratio)`` of a noise layer."""
    kind = spec.settings.get("type", "normal")
    if kind not in NOISE_TYPES:
        raise spec.error("type", f"unknown noise type {kind!r}; valid: {', '.join(NOISE_TYPES)}")
    return number(spec, "mean", 0.0), number(spec, "std", 1.0, 0.0), number(spec, "ratio", 1.0, 0.0, 1.0)


def batch_normal_settings(spec) -> tuple[bool, float, float, bool]:
    """``(rescale, epsilon, exp_ratio, exact)`` of a batch_normal layer."""
    return (flag(spec, "rescale", True), number(spec, "epsilon", 1e-10, 0.0, low_open=True),
            number(spec, "exp_ratio", 0.001, 0.0, 1.0, low_open=True), flag(spec, "exact", True))


def _check_output(spec) -> None:
    """``['output']`` takes no settings (the output layer's width comes from the dataset)
    and stands at the top level only."""
    if getattr(spec, "path", ()):
        raise spec.error(None, "the output marker can only stand at the top level, not inside a composite")


#: hconfig type -> its grammar check (registered in ``fastcnn.hconfig.CHECKS``)
CHECKS = {
    "dropout": keep_prob,
    "noise": noise_settings,
    "batch_normal": batch_normal_settings,
    "output": _check_output,
}


# --------------------------------------------------------------------------
# weight decay
# --------------------------------------------------------------------------


def decay_rate(value, name: str) -> float:
    """A decay rate: a finite number >= 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    return float(value)


def weight_keys(params: dict) -> list[str]:
    """The keys of ``params`` that decay: every full ``w`` and conv ``k`` (nested ones too).

    In the book's ``collect_params`` order: the output layer's first (the last layer with
    a weight), then the others in layer order.
    """
    keys = [key for key in params if key.rsplit("/", 1)[-1] in WEIGHT_NAMES]
    return keys[-1:] + keys[:-1]


def setup_decay(model, l2_decay, l1_decay):
    """The model's ``WeightDecay`` over ``weight_keys(model.params)``, handed to its optimizer
    when a rate is positive (an optimizer object without ``set_decay`` is then refused)."""
    from .optim import WeightDecay

    decay = WeightDecay(decay_rate(l2_decay, "l2_decay"), decay_rate(l1_decay, "l1_decay"),
                        tuple(weight_keys(model.params)))
    if decay.active:
        set_decay = getattr(model.optimizer, "set_decay", None)
        if not callable(set_decay):
            raise TypeError(f"l2_decay/l1_decay need an optimizer with set_decay (fastcnn.optim); "
                            f"{type(model.optimizer).__name__} has none")
        set_decay(decay)
    return decay


# --------------------------------------------------------------------------
# the histogram of weights (exec_all(show_params=True))
# --------------------------------------------------------------------------


def collect_params(params: dict) -> np.ndarray:
    """Every weight (``weight_keys`` order) as one flat float64 array."""
    keys = weight_keys(params)
    if not keys:
        return np.zeros(0)
    return np.concatenate([params[k].ravel().astype(np.float64) for k in keys])


def near_zero_line(values: np.ndarray) -> str:
    """``Near 0 parameters = 73.7%(611917/829790)``: the book's line (|p| <= 1e-5)."""
    total = int(values.size)
    near = int(np.count_nonzero(np.abs(values) <= NEAR_ZERO))
    share = 100.0 * near / total if total else 0.0
    return f"Near 0 parameters = {share:4.1f}%({near}/{total})"


def show_param_dist(model, path=None):
    """Draw the weights' density histogram to ``path`` (default ``<plot_dir>/param_dist.png``)
    and print the "Near 0 parameters" line; returns the plot's path (None without matplotlib)."""
    values = collect_params(model.params)
    written = None
    try:
        from . import viz
    except ImportError:  # the line is the promise; the picture needs matplotlib
        viz = None
    if viz is not None and values.size:
        written = viz.draw_param_dist(values, path if path is not None else model.plot_dir / "param_dist.png",
                                      title=f"{model.name}: weights")
    print(near_zero_line(values))
    return written
