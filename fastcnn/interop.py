"""Weights in and out: Deep Learning from Scratch pickles and PyTorch state dicts.

fastcnn is NHWC: conv kernels ``k [kh, kw, xchn, ychn]``, dense weights
``w [in, out]``, and a dense layer after a conv/pool stack flattens each
sample in ``(h, w, c)`` order. Deep Learning from Scratch (DLfS) and PyTorch
are NCHW: filters ``(FN, C, FH, FW)`` (PyTorch: ``(out, in, kh, kw)``) and the
flatten runs in ``(c, h, w)`` order, so the rows of the first dense weight
after the image part are permuted (``chw_rows_to_hwc``). DLfS affine weights
are ``(in, out)`` like fastcnn's; PyTorch's ``Linear.weight`` is ``(out, in)``.

Both directions match parameters in layer order: the model's conv and full
layers (its output layer included, last) against ``W1, b1, W2, ...`` or the
``Conv2d`` / ``Linear`` entries of ``to_torch_module``'s ``Sequential``.
Every shape is checked before anything is written, so a file that does not
fit leaves the model unchanged.

DLfS's ``Dropout`` is not inverted: at test time it multiplies its input by
``1 - dropout_ratio``; fastcnn's (and PyTorch's) dropout scales at training
time and is the identity at test time. So each DLfS dropout is folded into the
next weighted layer: ``W (x (1 - r)) + b = (W (1 - r)) x + b`` scales that
layer's weights, not its bias (ReLU and pooling in between commute with a
positive scale). A dropout after the last affine (DLfS DeepConvNet ends
``Affine, Dropout``) scales the whole output, ``(W x + b)(1 - r)``: weights
and bias (``output_dropout``).

Where things live: the DLfS loader and ``convert`` (``fastcnn convert``) here;
the restricted unpickler in ``fastcnn.safe_pickle``; the PyTorch twin in
``fastcnn.torch_twin`` (re-exported here); the layout helpers in ``fastcnn.nchw``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .nchw import WEIGHTED, activation, chw_rows_to_hwc, describe, keep_prob, oihw_to_kernel
from .safe_pickle import load_arrays
from .torch_twin import (
    from_torch_state_dict,
    load_torch_state_dict,
    save_torch_state_dict,
    to_torch_module,
    to_torch_state_dict,
    torch_plan,
)

__all__ = [
    "DLFS_PASSIVE", "from_torch_state_dict", "load_dlfs_params", "load_torch_state_dict",
    "save_torch_state_dict", "to_torch_module", "to_torch_state_dict", "torch_plan",
]

#: weightless layers a DLfS network's test-time forward has counterparts for (noise is off at test)
DLFS_PASSIVE = ("max", "avg", "dropout", "noise")
#: activations that commute with a positive scale (a dropout can be folded across them)
SCALE_FREE = ("relu", "none")


# -- Deep Learning from Scratch ------------------------------------------------------------------


def _dlfs_pairs(params, path: Path) -> int:
    """Check the pickle holds ``W1, b1, ..., Wn, bn`` (numeric arrays, nothing else); return n."""
    if not isinstance(params, dict):
        raise ValueError(f"{path}: expected a dict of arrays (DLfS save_params), got {type(params).__name__}")
    n = sum(1 for key in params if isinstance(key, str) and key.startswith("W"))
    expected = [f"{p}{i}" for i in range(1, n + 1) for p in "Wb"]
    missing = [key for key in expected if key not in params]
    extra = [repr(key) for key in params if key not in expected]
    if missing or extra or n == 0:
        raise ValueError(
            f"{path}: expected keys W1, b1, ..., Wn, bn (DLfS SimpleConvNet: W1..b3, DeepConvNet: W1..b8); "
            f"missing: {', '.join(missing) or 'none'}; unexpected: {', '.join(extra) or 'none'}"
        )
    for key in expected:
        value = params[key]
        if not isinstance(value, np.ndarray) or value.dtype.kind not in "fiu":
            kind = value.dtype if isinstance(value, np.ndarray) else type(value).__name__
            raise ValueError(f"{path}: {key} must be a numeric NumPy array, got {kind}")
    return n


def _dropout_scales(model, output_dropout: float) -> tuple[dict, float]:
    """``{layer index: factor}`` for the weighted layer after each dropout, and the factor of
    the last weighted layer's weights and bias (dropouts after it, and ``output_dropout``)."""
    scales, pending = {}, 1.0
    for layer in model.layers:
        kind = layer.spec.type
        if kind == "dropout":
            pending *= keep_prob(layer)  # DLfS test time: x * (1 - dropout_ratio)
        elif kind in WEIGHTED:
            if pending != 1.0:
                scales[layer.spec.index] = pending
            pending = 1.0
        elif pending != 1.0 and activation(layer) not in SCALE_FREE:
            raise ValueError(
                f"{describe(layer)} (activation {layer.spec.actfunc!r}) sits between a dropout and the "
                "next weighted layer: the DLfS test-time dropout scale cannot be folded across it"
            )
    if isinstance(output_dropout, bool) or not isinstance(output_dropout, (int, float)) \
            or not 0.0 <= output_dropout < 1.0:
        raise ValueError(f"output_dropout must be a ratio in [0, 1), got {output_dropout!r}")
    return scales, pending * (1.0 - output_dropout)


def load_dlfs_params(model, path, *, output_dropout: float = 0.0) -> None:
    """Load a Deep Learning from Scratch ``save_params`` pickle into ``model``, in place.

    Parameters
    ----------
    model : CnnModel
        Its conv and full layers (the output layer last) match ``W1, b1, ...``
        in order: conv ``W (FN, C, FH, FW)`` -> ``k [FH, FW, C, FN]``; affine
        ``W (in, out)`` -> ``w [in, out]``, rows reordered from ``(c, h, w)``
        to ``(h, w, c)`` where the input is an image; biases ``(n,)``. Pooling,
        dropout and noise layers have no parameters; other layer types are refused.
    path : str or Path
        The pickle, read with ``fastcnn.safe_pickle`` (no pickle code runs).
    output_dropout : float
        The ratio of a DLfS ``Dropout`` after the last affine layer that the
        model does not have itself (0: none). A model built with the book's
        trailing dropout (``['output'], ['dropout', ...]``, as the
        ``deepconvnet`` preset) needs none. Every DLfS dropout (``1 - keep_prob``
        of the model's dropout layers) is folded into the weights (see the
        module docstring) so that ``model.predict`` equals the book's
        ``predict(x, train_flg=False)``.
    """
    path = Path(path)
    params = load_arrays(path)
    n = _dlfs_pairs(params, path)
    weighted = [la for la in model.layers if la.spec.type in WEIGHTED]
    for layer in model.layers:
        if layer.spec.type not in WEIGHTED and layer.spec.type not in DLFS_PASSIVE:
            raise ValueError(f"{path}: {describe(layer)} has no counterpart in a DLfS network")
    if n != len(weighted):
        names = ", ".join(describe(la) for la in weighted)
        raise ValueError(f"{path}: the file has {n} weighted layers (W1..W{n}), the model has "
                         f"{len(weighted)} conv/full layers: {names}")
    scales, out_scale = _dropout_scales(model, output_dropout)
    new = {}
    for i, layer in enumerate(weighted, start=1):
        activation(layer)  # refuses conv actions other than the plain 'LA'
        w_key, b_key = f"W{i}", f"b{i}"
        w, b = params[w_key], params[b_key]
        w_name, b_name = WEIGHTED[layer.spec.type]
        target_w = layer.params[w_name]
        if layer.spec.type == "conv":
            kh, kw, xchn, ychn = target_w.shape
            want, layout = (ychn, xchn, kh, kw), "(FN, C, FH, FW)"
        else:
            want, layout = target_w.shape, "(in, out)"
        if w.shape != tuple(want):
            raise ValueError(f"{path}: {w_key} has shape {w.shape} in the file, but {describe(layer)} "
                             f"needs {tuple(want)} {layout} for its {layer.key}/{w_name} {target_w.shape}")
        if b.shape != layer.params[b_name].shape:
            raise ValueError(f"{path}: {b_key} has shape {b.shape} in the file, but {describe(layer)} "
                             f"needs {layer.params[b_name].shape} for {layer.key}/{b_name}")
        w = w.astype(np.float64)
        if layer.spec.type == "conv":
            w = oihw_to_kernel(w)
        elif len(layer.input_shape) == 3:
            w = chw_rows_to_hwc(w, layer.input_shape)
        w = w * scales.get(layer.spec.index, 1.0)
        b = b.astype(np.float64)
        if i == n:
            w, b = w * out_scale, b * out_scale
        new[(layer, w_name)], new[(layer, b_name)] = w, b
    for (layer, name), value in new.items():
        np.copyto(layer.params[name], value.astype(layer.params[name].dtype))


# -- files, for ``fastcnn convert`` ---------------------------------------------------------------

#: ``fastcnn convert`` sources: a DLfS pickle, a torch state dict, fastcnn params (.npz)
SOURCES = ("dlfs", "torch", "params")
#: output suffix -> what is written
TARGETS = {".npz": "fastcnn params (.npz)", ".pt": "torch state dict", ".pth": "torch state dict"}


class ShapeDataset:
    """Shapes only, no data: enough for ``CnnModel`` to build a model to convert weights of."""

    def __init__(self, input_shape, output_count: int, mode: str = "select"):
        self.name, self.mode = "shapes", mode
        self.input_shape, self.output_count = tuple(int(v) for v in input_shape), int(output_count)
        self.target_names = None

    def get_train_data(self, indices):
        raise ValueError("a ShapeDataset holds no data: it only builds models to convert weights")

    get_test_data = get_validate_data = get_train_data


def convert(hconfigs, source: str, path, out, *, input_shape=(28, 28, 1), classes: int = 10,
            output_dropout: float = 0.0, name: str = "convert") -> Path:
    """Build the model ``hconfigs`` (``input_shape`` ``(h, w, c)``, ``classes`` outputs), load
    ``path`` as ``source`` (``dlfs``, ``torch`` or ``params``) and write ``out`` atomically:
    ``.npz`` fastcnn params or ``.pt`` / ``.pth`` torch state dict. Returns ``out``."""
    from .model import CnnModel

    out = Path(out)
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; valid: {', '.join(SOURCES)}")
    if out.suffix not in TARGETS:
        raise ValueError(f"{out}: unknown output type {out.suffix!r}; valid: "
                         + ", ".join(f"{s} ({what})" for s, what in TARGETS.items()))
    model = CnnModel(name, ShapeDataset(input_shape, classes), None, hconfigs, backend="numpy", seed=0)
    if source == "dlfs":
        load_dlfs_params(model, path, output_dropout=output_dropout)
    elif source == "torch":
        load_torch_state_dict(model, path)
    else:
        model.load_params(path)
    if out.suffix == ".npz":
        return model.save_params(out)
    return save_torch_state_dict(model, out)
