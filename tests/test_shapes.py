"""Geometry helpers: pairs, SAME/VALID padding, output sizes, conv and pool geometry."""

from __future__ import annotations

import numpy as np
import pytest

from fastcnn.kernels.shapes import (
    ConvGeometry,
    PoolGeometry,
    as_pair,
    conv_geometry,
    out_size,
    pool_geometry,
    resolve_padding,
    same_pads,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(3, (3, 3)), ((2, 3), (2, 3)), ([4, 1], (4, 1)), (np.int64(2), (2, 2)), ((np.int32(1), 5), (1, 5))],
)
def test_as_pair(value, expected):
    assert as_pair(value, "stride") == expected


@pytest.mark.parametrize("kernel", range(1, 8))
@pytest.mark.parametrize("size", [1, 4, 5, 8, 9])
def test_same_pads_stride_1_follows_the_seed(size, kernel):
    """Stride 1: total kh - 1, top (kh - 1) // 2 as the seed's x_ext, extra row at the bottom."""
    assert same_pads(size, kernel, 1) == ((kernel - 1) // 2, kernel - 1 - (kernel - 1) // 2)


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "expected"),
    [
        (7, 3, 2, (1, 1)),  # out 4: (4-1)*2 + 3 - 7 = 2
        (6, 3, 2, (0, 1)),  # out 3: 4 + 3 - 6 = 1, extra at the end
        (5, 1, 2, (0, 0)),  # 1x1 kernels never pad
        (5, 2, 3, (0, 0)),  # out 2: 3 + 2 - 5 = 0
        (4, 5, 3, (2, 2)),  # out 2: 3 + 5 - 4 = 4
        (8, 4, 2, (1, 1)),  # out 4: 6 + 4 - 8 = 2
        (9, 4, 2, (1, 2)),  # out 5: 8 + 4 - 9 = 3
    ],
)
def test_same_pads_with_stride(size, kernel, stride, expected):
    assert same_pads(size, kernel, stride) == expected


@pytest.mark.parametrize("stride", [1, 2, 3, 4])
@pytest.mark.parametrize("kernel", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("size", [1, 2, 5, 6, 7, 12, 13])
def test_same_output_is_ceil_of_input_over_stride(size, kernel, stride):
    before, after = same_pads(size, kernel, stride)
    assert 0 <= after - before <= 1
    assert out_size(size, kernel, stride, before, after) == -(-size // stride)


@pytest.mark.parametrize(
    ("padding", "expected"),
    [
        ("valid", (0, 0, 0, 0)),
        ("VALID", (0, 0, 0, 0)),
        ("same", (1, 1, 0, 1)),  # 3x2 kernel, stride 1
        ("Same", (1, 1, 0, 1)),
        (0, (0, 0, 0, 0)),
        (2, (2, 2, 2, 2)),
        ((1, 3), (1, 1, 3, 3)),
        ([0, 2], (0, 0, 2, 2)),
    ],
)
def test_resolve_padding(padding, expected):
    assert resolve_padding(padding, (6, 7), (3, 2), (1, 1)) == expected


def test_resolve_padding_same_with_stride():
    # h: 7 in, stride 2 -> 4 out, total 2; w: 8 in, stride 3 -> 3 out, total 6 + 2 - 8 = 0
    assert resolve_padding("same", (7, 8), (3, 2), (2, 3)) == (1, 1, 0, 0)


@pytest.mark.parametrize(
    ("size", "k", "s", "before", "after", "expected"),
    [(5, 3, 1, 0, 0, 3), (5, 3, 2, 0, 0, 2), (6, 3, 2, 0, 0, 2), (7, 3, 2, 1, 1, 4), (5, 5, 1, 0, 0, 1)],
)
def test_out_size(size, k, s, before, after, expected):
    assert out_size(size, k, s, before, after) == expected


def test_conv_geometry_same_and_valid():
    geo = conv_geometry((2, 7, 9, 3), 3, 2, (2, 3), "same")
    assert isinstance(geo, ConvGeometry)
    # h: 7 in, stride 2 -> 4 out, total 3*2 + 3 - 7 = 2; w: 9 in, stride 3 -> 3 out, 2*3 + 2 - 9 < 0
    assert geo == ConvGeometry(3, 2, 2, 3, (1, 1, 0, 0), 4, 3)
    assert conv_geometry((2, 7, 9, 3), 3, 2, 1, "valid") == ConvGeometry(3, 2, 1, 1, (0, 0, 0, 0), 5, 8)


def test_conv_geometry_explicit_padding():
    # h: 6 + 2 + 2 - 5 = 5 -> 5 // 2 + 1 = 3; w: 7 + 1 + 1 - 3 = 6 -> 6 // 1 + 1 = 7
    assert conv_geometry((1, 6, 7, 1), 5, 3, (2, 1), (2, 1)) == ConvGeometry(5, 3, 2, 1, (2, 2, 1, 1), 3, 7)


def test_conv_geometry_kernel_may_fill_padded_input():
    assert conv_geometry((1, 3, 3, 1), 5, 5, 1, 1).yh == 1
    with pytest.raises(ValueError, match="larger than the padded input"):
        conv_geometry((1, 3, 3, 1), 5, 5, 1, "valid")


def test_pool_geometry():
    assert pool_geometry((1, 6, 7, 2), 2, None) == PoolGeometry(2, 2, 2, 2, 3, 3)
    assert pool_geometry((1, 7, 7, 2), 3, 2) == PoolGeometry(3, 3, 2, 2, 3, 3)
    assert pool_geometry((1, 8, 7, 2), 2, 3) == PoolGeometry(2, 2, 3, 3, 3, 2)
    assert pool_geometry((1, 6, 9, 2), (2, 3), (1, 2)) == PoolGeometry(2, 3, 1, 2, 5, 4)
    assert pool_geometry((1, 5, 5, 1), 5, None) == PoolGeometry(5, 5, 5, 5, 1, 1)


@pytest.mark.parametrize("stride", [1, 2, 3, 7])
@pytest.mark.parametrize("ksize", [1, 2, 3])
def test_pool_windows_fit_and_remainders_are_dropped(ksize, stride):
    geo = pool_geometry((1, 10, 11, 1), ksize, stride)
    for size, steps in ((10, geo.yh), (11, geo.yw)):
        assert (steps - 1) * stride + ksize <= size  # the last window fits
        assert steps * stride + ksize > size  # one more would not
