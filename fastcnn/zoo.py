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
- ``deepconvnet``: Deep Learning from Scratch's DeepConvNet (ch. 8) for 28x28x1 MNIST:
  six 3x3 convs (16, 16, 32, 32, 64, 64 channels, integer pads 1, 1, 1, 2, 1, 1: the pad
  2 turns the 14x14 map into 16x16), a 2x2 max pool after conv 2, 4 and 6
  (28 -> 14, 16 -> 8, 8 -> 4), affine 50 + ReLU, dropout 0.5, the output layer (affine
  10, placed by the ``['output']`` marker) and dropout 0.5 on its values; He init
  (``CnnModel``'s default). The book's dropout is not inverted (outputs scaled by
  ``1 - ratio`` at test time); fastcnn's is (scaled by ``1 / keep_prob`` in training),
  which gives the same predictions once the weights are scaled (``fastcnn.interop``).
- ``inception_flower`` (96x96x3), ``plain_flower``, ``residual_flower``, ``bottleneck_flower``
  (64x64x3): the book's chapter-9 flower networks, conv actions 'LAB' (``inception_flower_la``:
  'LA'), built from the book's macros (``fastcnn.macros``, docs/composite.md); their
  ``param_count`` is the book's printed total (43885, 173637, 173637, 189925).
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

#: Deep Learning from Scratch's DeepConvNet (ch. 8): conv/ReLU pairs, three pools, two dropouts
DEEPCONVNET = [
    ["conv", {"ksize": 3, "chn": 16, "padding": 1}],
    ["conv", {"ksize": 3, "chn": 16, "padding": 1}],
    ["max", {"stride": 2}],
    ["conv", {"ksize": 3, "chn": 32, "padding": 1}],
    ["conv", {"ksize": 3, "chn": 32, "padding": 2}],
    ["max", {"stride": 2}],
    ["conv", {"ksize": 3, "chn": 64, "padding": 1}],
    ["conv", {"ksize": 3, "chn": 64, "padding": 1}],
    ["max", {"stride": 2}],
    ["full", {"width": 50}],
    ["dropout", {"keep_prob": 0.5}],
    ["output"],
    ["dropout", {"keep_prob": 0.5}],
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
    "deepconvnet": DEEPCONVNET,
}

#: the book's chapter-9 networks for flowers (macros in ``fastcnn.book_macros``), one ``custom``
#: layer each, with the conv actions of the book's runs: 'LAB' (conv, ReLU, batch norm)
BOOK_FLOWER_PRESETS: dict[str, list] = {
    name: [["custom", {"name": macro, "args": {"#act": act}}]]
    for name, macro, act in (
        ("inception_flower", "inception_flower", "LAB"),
        ("inception_flower_la", "inception_flower", "LA"),
        ("plain_flower", "plain_flower", "LAB"),
        ("residual_flower", "residual_flower", "LAB"),
        ("bottleneck_flower", "bottleneck_flower", "LAB"),
    )
}
PRESETS.update(BOOK_FLOWER_PRESETS)

#: the input shape the book built a preset for (its flowers resolution), where it is not the dataset's
PRESET_INPUTS = {"inception_flower": (96, 96, 3), "inception_flower_la": (96, 96, 3),
                 "plain_flower": (64, 64, 3), "residual_flower": (64, 64, 3),
                 "bottleneck_flower": (64, 64, 3)}

#: training settings of the digits demo (``CnnModel.exec_all`` / ``train`` keywords)
DEMO_TRAIN = {"epoch_count": 30, "batch_size": 32, "learning_rate": 0.001}


def get_preset(name: str) -> list:
    """A fresh copy of the preset hconfigs called ``name``."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; valid presets: {', '.join(PRESETS)}")
    return copy.deepcopy(PRESETS[name])
