"""NHWC (fastcnn) <-> NCHW (Deep Learning from Scratch, PyTorch) weight layouts.

fastcnn keeps conv kernels as ``k [kh, kw, xchn, ychn]`` and flattens an
image ``[h, w, c]`` per sample in ``(h, w, c)`` order before a dense layer;
NCHW libraries keep filters as ``(out, in, kh, kw)`` and flatten in
``(c, h, w)`` order, so the rows of the first dense weight after the image
part come in another order. Shared by ``fastcnn.interop`` and ``fastcnn.torch_twin``.
"""

from __future__ import annotations

import numpy as np

#: layer types with weights, matched in layer order; their (weight, bias) parameter names
WEIGHTED = {"conv": ("k", "b"), "full": ("w", "b")}


def oihw_to_kernel(w: np.ndarray) -> np.ndarray:
    """Filters ``(out, in, kh, kw)`` -> fastcnn's ``k [kh, kw, in, out]``."""
    return np.ascontiguousarray(w.transpose(2, 3, 1, 0))


def kernel_to_oihw(k: np.ndarray) -> np.ndarray:
    """fastcnn's ``k [kh, kw, in, out]`` -> filters ``(out, in, kh, kw)``."""
    return np.ascontiguousarray(k.transpose(3, 2, 0, 1))


def chw_rows_to_hwc(w: np.ndarray, image_shape) -> np.ndarray:
    """Rows of a dense weight ``[c*h*w, out]`` in NCHW flatten order -> fastcnn's ``[h*w*c, out]``.

    ``image_shape`` is the dense layer's input ``(h, w, c)``.
    """
    h, wd, c = image_shape
    return np.ascontiguousarray(w.reshape(c, h, wd, -1).transpose(1, 2, 0, 3).reshape(h * wd * c, -1))


def hwc_rows_to_chw(w: np.ndarray, image_shape) -> np.ndarray:
    """The inverse of ``chw_rows_to_hwc``: fastcnn's ``[h*w*c, out]`` -> NCHW order ``[c*h*w, out]``."""
    h, wd, c = image_shape
    return np.ascontiguousarray(w.reshape(h, wd, c, -1).transpose(2, 0, 1, 3).reshape(c * h * wd, -1))


def describe(layer) -> str:
    """``layer 3 ('full', layer03_full)``: how the interop errors name a layer."""
    return f"layer {layer.spec.index} ({layer.spec.type!r}, {layer.key})"


def keep_prob(layer) -> float:
    """A dropout layer's keep probability (the book's default: 1.0)."""
    return float(getattr(layer, "keep_prob", layer.spec.settings.get("keep_prob", 1.0)))


def activation(layer) -> str:
    """The activation after ``layer`` (``actfunc``); a conv whose ``actions`` are other than the
    plain ``'LA'`` (linear, then activation) has no NCHW counterpart and is refused by name."""
    actions = layer.spec.settings.get("actions")
    if actions is not None and actions != "LA":
        raise ValueError(f"{describe(layer)}: conv actions {actions!r} have no counterpart outside "
                         "fastcnn (only the default 'LA')")
    return layer.spec.actfunc
