"""The ``torch.nn.Sequential`` twin of a ``CnnModel``, and its state dict both ways.

The twin runs fastcnn's layers in order on NCHW input (``x.permute(0, 3, 1, 2)``):
``Conv2d`` (+ ``ConstantPad2d`` for asymmetric padding: SAME with an even
kernel or a stride), ``MaxPool2d`` / ``AvgPool2d`` (padding zeros counted, as
fastcnn does), ``Flatten`` before the first full layer after the image part,
``Linear``, ``Dropout`` (inverted in both libraries) and ``ReLU`` / ``Sigmoid`` /
``Tanh`` after each layer with that activation. Other layer types have no twin
and are refused by name. Weights are converted with ``fastcnn.nchw``: conv
``k [kh, kw, in, out]`` <-> ``(out, in, kh, kw)``, dense ``w [in, out]`` <->
``Linear.weight (out, in)`` with ``(h, w, c)`` <-> ``(c, h, w)`` input order.

PyTorch is optional: it is imported only when a function here needs it, and
its absence is a clear ImportError. ``torch_plan`` and ``from_torch_state_dict``
with NumPy arrays work without it.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np

from .atomic import atomic_write, named_error
from .nchw import (
    activation,
    chw_rows_to_hwc,
    describe,
    hwc_rows_to_chw,
    keep_prob,
    kernel_to_oihw,
    oihw_to_kernel,
)


def _torch():
    try:
        import torch
    except ImportError:
        raise ImportError("PyTorch is not installed: the torch interop needs it (pip install torch); "
                          "the rest of fastcnn does not") from None
    return torch


_TORCH_ACTS = {"relu": "ReLU", "sigmoid": "Sigmoid", "tanh": "Tanh"}


def torch_plan(model) -> list[tuple]:
    """The ``torch.nn.Sequential`` twin of ``model`` as ``(module name, kwargs, layer or None)``.

    Plain Python (no torch): ``to_torch_module`` instantiates it and the
    state-dict keys are ``f"{position}.weight"`` / ``.bias`` of its Conv2d and
    Linear entries. The twin takes NCHW input ``x.permute(0, 3, 1, 2)``.
    """
    plan, flat = [], len(model.input_shape) != 3
    for layer in model.layers:
        kind = layer.spec.type
        if kind in ("conv", "max", "avg"):
            top, bottom, left, right = layer.geo.pads if kind == "conv" else layer.pads
            kh, kw = (layer.geo.kh, layer.geo.kw) if kind == "conv" else layer.ksize
            stride = (layer.geo.sh, layer.geo.sw) if kind == "conv" else layer.stride
            fits = kind == "conv" or (2 * top <= kh and 2 * left <= kw)  # torch pools pad <= k / 2
            inline = top == bottom and left == right and fits
            pad = (top, left) if inline else (0, 0)
            if not inline:
                value = -float("inf") if kind == "max" else 0.0
                plan.append(("ConstantPad2d", {"padding": (left, right, top, bottom), "value": value}, None))
            if kind == "conv":
                kwargs = {"in_channels": layer.input_shape[2], "out_channels": layer.output_shape[2],
                          "kernel_size": (kh, kw), "stride": stride, "padding": pad}
                plan.append(("Conv2d", kwargs, layer))
            elif kind == "max":
                plan.append(("MaxPool2d", {"kernel_size": (kh, kw), "stride": stride, "padding": pad}, None))
            else:
                plan.append(("AvgPool2d", {"kernel_size": (kh, kw), "stride": stride, "padding": pad,
                                           "count_include_pad": True}, None))
        elif kind == "full":
            if not flat:
                plan.append(("Flatten", {}, None))
                flat = True
            fan_in, width = layer.params["w"].shape
            plan.append(("Linear", {"in_features": fan_in, "out_features": width}, layer))
        elif kind == "dropout":
            plan.append(("Dropout", {"p": 1.0 - keep_prob(layer)}, None))
            continue
        else:
            raise ValueError(f"{describe(layer)} has no PyTorch twin "
                             "(supported: conv, full, max, avg, dropout)")
        act = activation(layer)
        if act != "none":
            plan.append((_TORCH_ACTS[act], {}, None))
    return plan


def to_torch_module(model):
    """A ``torch.nn.Sequential`` computing ``model.predict`` on NCHW input, with its weights,
    in the model's dtype and in eval mode (dropout off; call ``.train()`` to train it)."""
    torch = _torch()
    modules = [getattr(torch.nn, name)(**kwargs) for name, kwargs, _ in torch_plan(model)]
    net = torch.nn.Sequential(*modules)
    net = net.double() if model.dtype == np.float64 else net.float()
    net.load_state_dict(to_torch_state_dict(model))
    return net.eval()


def _torch_arrays(model) -> OrderedDict:
    """The twin's state dict as NumPy arrays (NCHW layouts)."""
    out = OrderedDict()
    for pos, (name, _, layer) in enumerate(torch_plan(model)):
        if layer is None:
            continue
        if name == "Conv2d":
            out[f"{pos}.weight"] = np.ascontiguousarray(kernel_to_oihw(layer.params["k"]))
        else:
            w = layer.params["w"]
            if len(layer.input_shape) == 3:
                w = hwc_rows_to_chw(w, layer.input_shape)
            out[f"{pos}.weight"] = np.ascontiguousarray(w.T)
        out[f"{pos}.bias"] = layer.params["b"].copy()
    return out


def to_torch_state_dict(model) -> OrderedDict:
    """``model``'s parameters as the state dict of ``to_torch_module(model)`` (torch tensors, copies)."""
    torch = _torch()
    return OrderedDict((key, torch.from_numpy(a.copy())) for key, a in _torch_arrays(model).items())


def from_torch_state_dict(model, state_dict, *, source: str = "state_dict") -> None:
    """Load a state dict of ``to_torch_module(model)``'s twin (tensors or arrays) into ``model``.

    Keys must match exactly; every shape is checked (errors name the key, the
    layer and both shapes) before any parameter is overwritten.
    """
    expected = _torch_arrays(model)
    if not hasattr(state_dict, "keys"):
        raise TypeError(f"{source}: expected a state dict (a mapping), got {type(state_dict).__name__}")
    missing = [k for k in expected if k not in state_dict]
    extra = [str(k) for k in state_dict if k not in expected]
    if missing or extra:
        raise ValueError(f"{source}: keys do not match the model's torch twin; missing: "
                         f"{', '.join(missing) or 'none'}; unexpected: {', '.join(extra) or 'none'} "
                         f"(expected: {', '.join(expected)})")
    layers = {f"{pos}.": layer for pos, (_, _, layer) in enumerate(torch_plan(model)) if layer is not None}
    new = []
    for key, want in expected.items():
        value = state_dict[key]
        if hasattr(value, "detach"):
            value = value.detach().cpu().numpy()
        value = np.asarray(value)
        layer = layers[key.split(".")[0] + "."]
        if value.shape != want.shape:
            raise ValueError(f"{source}: {key} has shape {tuple(value.shape)}, but {describe(layer)} "
                             f"needs {want.shape}")
        if key.endswith(".bias"):
            new.append((layer, "b", value))
        elif layer.spec.type == "conv":
            new.append((layer, "k", oihw_to_kernel(value)))
        else:
            w = value.T
            if len(layer.input_shape) == 3:
                w = chw_rows_to_hwc(w, layer.input_shape)
            new.append((layer, "w", w))
    for layer, name, value in new:
        np.copyto(layer.params[name], value.astype(layer.params[name].dtype))


# -- files ----------------------------------------------------------------------------------------


def save_torch_state_dict(model, path) -> Path:
    """Write ``to_torch_state_dict(model)`` to ``path`` (``torch.save``) atomically."""
    torch, path = _torch(), Path(path)
    state = to_torch_state_dict(model)
    try:
        return atomic_write(path, lambda f: torch.save(state, f))
    except OSError as exc:
        raise named_error(exc, f"cannot save the torch state dict to {path}") from exc


def load_torch_state_dict(model, path) -> None:
    """Load a ``.pt`` state dict (``torch.load(weights_only=True)``: no pickle code runs)."""
    torch, path = _torch(), Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"torch state dict file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds (UnpicklingError, RuntimeError, ...)
        raise ValueError(f"{path} is not a readable torch state dict: {type(exc).__name__}: {exc}") from None
    from_torch_state_dict(model, state, source=str(path))
