"""Max and average pooling layers over NHWC inputs.

The kernels pool without padding; a ``padding`` setting is applied here by
padding the input (max: the dtype's lowest value, avg: zeros, counted in the
mean) and cropping the gradient. Windows that do not tile the input drop the
remainder; ``ksize`` defaults to ``stride`` (the seed's pooling). With a
workspace the output, its activation and the (padded) input gradient go to
reused arrays; the padded input itself is a new ``np.pad`` array every call.
"""

from __future__ import annotations

import numpy as np

from ..hconfig import padding, pair
from ..kernels.shapes import pool_geometry, resolve_padding
from .base import PRE_ACTIVATION, Layer


class _Pool(Layer):
    """Shared geometry for ``MaxPool`` and ``AvgPool``."""

    makes_maps = True

    def build(self, rng, init) -> tuple:
        xh, xw, chn = self.needs_image()
        self.stride = pair(self.spec, "stride", self.spec.settings.get("ksize"))
        self.ksize = pair(self.spec, "ksize", self.stride)
        pad = padding(self.spec, "valid")
        self.pads = resolve_padding(pad, (xh, xw), self.ksize, self.stride)
        top, bottom, left, right = self.pads
        if max(top, bottom) >= self.ksize[0] or max(left, right) >= self.ksize[1]:
            raise self.spec.error("padding", f"{pad!r} must be smaller than the window {self.ksize}")
        ph, pw = xh + top + bottom, xw + left + right
        try:  # resolved once, on the padded input: it holds for any batch size
            self.geo = geo = pool_geometry((1, ph, pw, chn), self.ksize, self.stride)
        except ValueError as exc:
            key = "ksize" if "ksize" in self.spec.settings else "stride"
            raise self.spec.error(key, f"{exc}") from None
        return (geo.yh, geo.yw, chn)

    def _pad(self, x: np.ndarray) -> np.ndarray:
        top, bottom, left, right = self.pads
        if not any(self.pads):
            return x
        return np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=self.fill(x.dtype))

    def fill(self, dtype) -> float:
        return 0.0

    def forward(self, x: np.ndarray, workspace=None):
        xp = self._pad(x)
        out = self.buffer(workspace, PRE_ACTIVATION, (x.shape[0], *self.output_shape))
        pooled = self.pool(xp, out)
        y = self.activate(pooled, workspace)
        return y, (xp, y)

    def backward(self, g_y: np.ndarray, aux, input_grad: bool = True, workspace=None):
        xp, y = aux
        g_pool = self.grad_activation(g_y, y, workspace)
        g_xp = self.unpool(g_pool, xp, self.buffer(workspace, "g_x", xp.shape))
        if not any(self.pads):
            return g_xp, {}
        top, bottom, left, right = self.pads  # crop, contiguous for the layer below
        g_x = g_xp[:, top : g_xp.shape[1] - bottom, left : g_xp.shape[2] - right, :]
        return np.ascontiguousarray(g_x), {}

    def pool(self, xp: np.ndarray, out) -> np.ndarray:
        """The backend's pooling forward over the padded input (into ``out`` if given)."""
        raise NotImplementedError

    def unpool(self, g_y: np.ndarray, xp: np.ndarray, out) -> np.ndarray:
        """The backend's pooling backward: the gradient of the padded input."""
        raise NotImplementedError


class MaxPool(_Pool):
    """Maximum of each window; the gradient goes to the first maximum."""

    def pool(self, xp, out):
        return self.ops.max_pool_forward(xp, self.geo, out=out)

    def unpool(self, g_y, xp, out):
        return self.ops.max_pool_backward(g_y, xp, self.geo, out=out)

    def fill(self, dtype) -> float:
        return float(np.finfo(dtype).min)


class AvgPool(_Pool):
    """Mean of each window (padding zeros count in the mean)."""

    def pool(self, xp, out):
        return self.ops.avg_pool_forward(xp, self.geo, out=out)

    def unpool(self, g_y, xp, out):
        return self.ops.avg_pool_backward(g_y, xp, self.geo, out=out)
