"""Ready-made hconfigs (hidden layers only; ``CnnModel`` adds the output layer).

- ``digits``: the demo's small CNN for scikit-learn's 8x8x1 digits; with
  ``DEMO_TRAIN`` (Adam, 30 epochs, batch 32, lr 0.001, the CLI's defaults) it
  reaches test accuracy >= 0.97 in a few seconds on the numba backend.
- ``simpleconvnet``: Deep Learning from Scratch's SimpleConvNet for 28x28 MNIST
  (conv 30@5x5 valid, relu, max 2x2, affine 100, relu).
- ``lenet``: LeNet-5 style (sigmoid, average-pooling subsampling) for 28x28 MNIST.
- ``flower``: the book's 3-conv flowers network for 96x96x3 (the seed names the
  flower model but does not list its layers; this is the book notebook's network,
  the same stack as the seed's Office-31 model).
- ``office31``: exactly the seed's Office-31 model (96x96x3, dual_select).
"""

from __future__ import annotations

import copy

#: the seed's Office-31 stack, also the book notebook's flower network
SEED_THREE_CONV = [
    ["conv", {"ksize": 3, "chn": 6}],
    ["max", {"stride": 2}],
    ["conv", {"ksize": 3, "chn": 12}],
    ["max", {"stride": 2}],
    ["conv", {"ksize": 3, "chn": 24}],
    ["avg", {"stride": 3}],
]

PRESETS: dict[str, list] = {
    "digits": [
        ["conv", {"ksize": 3, "chn": 16}],
        ["max", {"stride": 2}],
        64,
    ],
    "simpleconvnet": [
        ["conv", {"ksize": 5, "chn": 30, "padding": "valid"}],
        ["max", {"stride": 2}],
        100,
    ],
    "lenet": [
        ["conv", {"ksize": 5, "chn": 6, "actfunc": "sigmoid"}],
        ["avg", {"stride": 2}],
        ["conv", {"ksize": 5, "chn": 16, "padding": "valid", "actfunc": "sigmoid"}],
        ["avg", {"stride": 2}],
        ["full", {"width": 120, "actfunc": "sigmoid"}],
        ["full", {"width": 84, "actfunc": "sigmoid"}],
    ],
    "flower": SEED_THREE_CONV,
    "office31": SEED_THREE_CONV,
}

#: training settings of the digits demo (``CnnModel.exec_all`` / ``train`` keywords)
DEMO_TRAIN = {"epoch_count": 30, "batch_size": 32, "learning_rate": 0.001}


def get_preset(name: str) -> list:
    """A fresh copy of the preset hconfigs called ``name``."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; valid presets: {', '.join(PRESETS)}")
    return copy.deepcopy(PRESETS[name])
