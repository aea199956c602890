"""Bad arguments to the public kernel wrappers: a clear ValueError/TypeError naming the culprit.

Validation lives in ``fastcnn.kernels`` (not in the backends), so the table
runs against the ``numpy`` backend; one test repeats a few cases on every
backend to show the checks happen before dispatch.
"""

from __future__ import annotations

import numpy as np
import pytest

from fastcnn import kernels as K

F64 = np.float64

# good arguments, mutated one at a time below
X = np.zeros((1, 5, 6, 2))  # [mb, h, w, chn]
KER = np.zeros((3, 3, 2, 4))  # [kh, kw, xchn, ychn]
B = np.zeros(4)
GY_CONV = np.zeros((1, 5, 6, 4))  # conv output, stride 1 'same'
GY_POOL = np.zeros((1, 2, 3, 2))  # 2x2 pooling of X
COLS = np.zeros((30, 18))  # ext_regions(X, 3, 3)


def case(fn, args, kwargs, exc, match, name):
    return pytest.param(fn, args, kwargs, exc, match, id=name)


X_CHECKS = [
    (X[0], ValueError, r"x \[mb, h, w, chn\] must have rank 4, got shape \(5, 6, 2\)", "x-rank-3"),
    (X[None], ValueError, r"x \[mb, h, w, chn\] must have rank 4", "x-rank-5"),
    (X.tolist(), TypeError, r"x \[mb, h, w, chn\] must be a numpy array, got list", "x-list"),
    (X.astype(np.int64), TypeError, r"x \[mb, h, w, chn\] must be float32 or float64, got int64", "x-int"),
    (X.astype(np.float16), TypeError, r"x \[mb, h, w, chn\] must be float32 or float64", "x-float16"),
    (X.astype(bool), TypeError, r"x \[mb, h, w, chn\] must be float32 or float64", "x-bool"),
    (np.zeros((0, 5, 6, 2)), ValueError, r"x \[mb, h, w, chn\] must not be empty", "x-empty"),
]

CASES = [
    # unknown backend, on every function
    case(
        K.conv2d_forward,
        (X, KER, B),
        {"backend": "torch"},
        ValueError,
        r"unknown backend 'torch'",
        "conv-fwd",
    ),
    case(
        K.conv2d_backward, (GY_CONV, X, KER), {"backend": "NumPy"}, ValueError, "unknown backend", "conv-bwd"
    ),
    case(K.max_pool_forward, (X, 2), {"backend": ""}, ValueError, "unknown backend", "max-fwd"),
    case(K.max_pool_backward, (GY_POOL, X, 2), {"backend": None}, ValueError, "unknown backend", "max-bwd"),
    case(K.avg_pool_forward, (X, 2), {"backend": "cuda"}, ValueError, "unknown backend", "avg-fwd"),
    case(K.avg_pool_backward, (GY_POOL, X, 2), {"backend": "gpu"}, ValueError, "unknown backend", "avg-bwd"),
    case(K.ext_regions, (X, 3, 3), {"backend": "im2col"}, ValueError, "unknown backend", "ext"),
    case(K.undo_ext_regions, (COLS, X.shape, 3, 3), {"backend": "x"}, ValueError, "unknown backend", "undo"),
    # x: rank, type, dtype, emptiness, for every function that takes x
    *[case(K.conv2d_forward, (x, KER, B), {}, e, m, f"conv-fwd-{n}") for x, e, m, n in X_CHECKS],
    *[case(K.conv2d_backward, (GY_CONV, x, KER), {}, e, m, f"conv-bwd-{n}") for x, e, m, n in X_CHECKS],
    *[case(K.max_pool_forward, (x, 2), {}, e, m, f"max-fwd-{n}") for x, e, m, n in X_CHECKS],
    *[case(K.max_pool_backward, (GY_POOL, x, 2), {}, e, m, f"max-bwd-{n}") for x, e, m, n in X_CHECKS],
    *[case(K.avg_pool_forward, (x, 2), {}, e, m, f"avg-fwd-{n}") for x, e, m, n in X_CHECKS],
    *[case(K.avg_pool_backward, (GY_POOL, x, 2), {}, e, m, f"avg-bwd-{n}") for x, e, m, n in X_CHECKS],
    *[case(K.ext_regions, (x, 3, 3), {}, e, m, f"ext-{n}") for x, e, m, n in X_CHECKS],
    # kernel
    case(
        K.conv2d_forward,
        (X, KER[0], B),
        {},
        ValueError,
        r"k \[kh, kw, xchn, ychn\] must have rank 4",
        "k-rank",
    ),
    case(
        K.conv2d_forward,
        (X, KER.astype(np.float32), B),
        {},
        TypeError,
        r"k \[kh, kw, xchn, ychn\] has dtype float32 but x has float64",
        "k-mixed-dtype",
    ),
    case(
        K.conv2d_forward,
        (X.astype(np.float32), KER, B.astype(np.float32)),
        {},
        TypeError,
        r"k \[kh, kw, xchn, ychn\] has dtype float64 but x has float32",
        "k-mixed-dtype-f32-x",
    ),
    case(K.conv2d_forward, (X, KER.astype(int), B), {}, TypeError, r"k \[kh.* must be float32", "k-int"),
    case(
        K.conv2d_forward,
        (X, np.zeros((3, 3, 3, 4)), B),
        {},
        ValueError,
        r"channel mismatch: x has 2 channels .* but k expects 3",
        "channel-mismatch",
    ),
    case(
        K.conv2d_backward,
        (GY_CONV, X, np.zeros((3, 3, 1, 4))),
        {},
        ValueError,
        "channel mismatch",
        "bwd-channel-mismatch",
    ),
    case(
        K.conv2d_backward,
        (GY_CONV, X, KER[..., 0]),
        {},
        ValueError,
        r"k \[kh.* must have rank 4",
        "bwd-k-rank",
    ),
    case(
        K.conv2d_forward,
        (X, np.zeros((0, 3, 2, 4)), B),
        {},
        ValueError,
        r"k \[kh.* must not be empty",
        "k-empty",
    ),
    # bias
    case(
        K.conv2d_forward,
        (X, KER, np.zeros(3)),
        {},
        ValueError,
        "b has length 3 but k has 4 output",
        "b-length",
    ),
    case(K.conv2d_forward, (X, KER, B[None]), {}, ValueError, r"b \[ychn\] must have rank 1", "b-rank"),
    case(K.conv2d_forward, (X, KER, B.astype(np.float32)), {}, TypeError, r"b \[ychn\] has dtype", "b-dtype"),
    case(K.conv2d_forward, (X, KER, [0.0] * 4), {}, TypeError, r"b \[ychn\] must be a numpy array", "b-list"),
    # stride
    case(K.conv2d_forward, (X, KER, B, 0), {}, ValueError, "stride must be positive", "conv-stride-0"),
    case(
        K.conv2d_forward, (X, KER, B, (1, -1)), {}, ValueError, "stride must be positive", "conv-stride-neg"
    ),
    case(K.conv2d_forward, (X, KER, B, 1.5), {}, TypeError, "stride must be an int", "conv-stride-float"),
    case(K.conv2d_forward, (X, KER, B, True), {}, TypeError, "stride must be an int", "conv-stride-bool"),
    case(
        K.conv2d_forward, (X, KER, B, (1, 2, 3)), {}, TypeError, "stride must be an int", "conv-stride-triple"
    ),
    case(
        K.conv2d_forward,
        (X, KER, B, (1, 1.5)),
        {},
        TypeError,
        r"stride must be an int or an \(h, w\) pair",
        "conv-stride-frac",
    ),
    case(K.conv2d_forward, (X, KER, B, "2"), {}, TypeError, "stride", "conv-stride-str"),
    case(K.conv2d_forward, (X, KER, B, (2.0, 2.0)), {}, TypeError, "stride must be an int", "stride-fpair"),
    case(K.conv2d_forward, (X, KER, B), {"padding": 1.0}, TypeError, "padding must be", "conv-pad-float"),
    case(K.conv2d_backward, (GY_CONV, X, KER, 0), {}, ValueError, "stride must be positive", "bwd-stride-0"),
    case(K.max_pool_forward, (X, 2, 0), {}, ValueError, "stride must be positive", "max-stride-0"),
    case(K.avg_pool_forward, (X, 2, (2, -2)), {}, ValueError, "stride must be positive", "avg-stride-neg"),
    case(
        K.max_pool_backward, (GY_POOL, X, 2, -1), {}, ValueError, "stride must be positive", "max-bwd-stride"
    ),
    case(K.ext_regions, (X, 3, 3, 0), {}, ValueError, "stride must be positive", "ext-stride-0"),
    case(
        K.undo_ext_regions, (COLS, X.shape, 3, 3, 0), {}, ValueError, "stride must be positive", "undo-stride"
    ),
    # padding
    case(
        K.conv2d_forward,
        (X, KER, B, 1, "full"),
        {},
        ValueError,
        r"padding must be 'same', 'valid'",
        "pad-str",
    ),
    case(K.conv2d_forward, (X, KER, B, 1, ""), {}, ValueError, "padding must be", "pad-empty-str"),
    case(K.conv2d_forward, (X, KER, B, 1, -1), {}, ValueError, "padding must be non-negative", "pad-neg"),
    case(
        K.conv2d_forward, (X, KER, B, 1, (1, -2)), {}, ValueError, "padding must be non-negative", "pad-neg-w"
    ),
    case(K.conv2d_forward, (X, KER, B, 1, 1.5), {}, TypeError, "padding must be", "pad-float"),
    case(K.conv2d_forward, (X, KER, B, 1, None), {}, TypeError, "padding must be", "pad-none"),
    case(K.conv2d_forward, (X, KER, B, 1, True), {}, TypeError, "padding must be", "pad-bool"),
    case(K.conv2d_forward, (X, KER, B, 1, (1, 1, 1, 1)), {}, TypeError, "padding must be", "pad-four"),
    case(K.conv2d_backward, (GY_CONV, X, KER, 1, "half"), {}, ValueError, "padding must be", "bwd-pad"),
    case(K.ext_regions, (X, 3, 3, 1, "SAME!"), {}, ValueError, "padding must be", "ext-pad"),
    case(K.undo_ext_regions, (COLS, X.shape, 3, 3, 1, "x"), {}, ValueError, "padding must be", "undo-pad"),
    # window larger than the (padded) input
    case(
        K.conv2d_forward,
        (np.zeros((1, 2, 6, 2)), KER, B, 1, "valid"),
        {},
        ValueError,
        r"kernel 3x3 is larger than the padded input 2x6",
        "kernel-too-tall",
    ),
    case(
        K.conv2d_forward,
        (X, np.zeros((1, 9, 2, 4)), B, 1, (0, 1)),
        {},
        ValueError,
        r"kernel 1x9 is larger than the padded input 5x8",
        "kernel-too-wide-padded",
    ),
    case(
        K.conv2d_backward,
        (GY_CONV, np.zeros((1, 5, 2, 2)), KER, 1, "valid"),
        {},
        ValueError,
        "larger than the padded input",
        "bwd-kernel-too-wide",
    ),
    case(
        K.ext_regions, (X, 6, 3, 1, "valid"), {}, ValueError, "larger than the padded input", "ext-too-tall"
    ),
    case(
        K.max_pool_forward,
        (X, 6),
        {},
        ValueError,
        r"pooling window 6x6 is larger than the input 5x6",
        "max-big",
    ),
    case(K.avg_pool_forward, (X, (2, 7)), {}, ValueError, r"pooling window 2x7 is larger", "avg-big"),
    case(K.max_pool_backward, (GY_POOL, X, (6, 1)), {}, ValueError, "pooling window", "max-bwd-big"),
    # ksize
    case(K.max_pool_forward, (X, 0), {}, ValueError, "ksize must be positive", "ksize-0"),
    case(K.avg_pool_forward, (X, (2, 0)), {}, ValueError, "ksize must be positive", "ksize-0-w"),
    case(K.max_pool_forward, (X, 2.5), {}, TypeError, "ksize must be an int", "ksize-float"),
    case(K.avg_pool_backward, (GY_POOL, X, None), {}, TypeError, "ksize must be an int", "ksize-none"),
    # g_y
    case(
        K.conv2d_backward,
        (np.zeros((1, 5, 6, 3)), X, KER),
        {},
        ValueError,
        r"g_y has shape \(1, 5, 6, 3\), but the forward output has shape \(1, 5, 6, 4\)",
        "conv-gy-channels",
    ),
    case(
        K.conv2d_backward,
        (GY_CONV, X, KER, 2),
        {},
        ValueError,
        r"g_y has shape \(1, 5, 6, 4\), but the forward output has shape \(1, 3, 3, 4\)",
        "conv-gy-stride",
    ),
    case(K.conv2d_backward, (GY_CONV[0], X, KER), {}, ValueError, "g_y must have rank 4", "conv-gy-rank"),
    case(
        K.conv2d_backward,
        (GY_CONV.astype(np.float32), X, KER),
        {},
        TypeError,
        "g_y has dtype float32 but x has float64",
        "conv-gy-dtype",
    ),
    case(
        K.conv2d_backward, (GY_CONV.astype(int), X, KER), {}, TypeError, "g_y must be float32", "conv-gy-int"
    ),
    case(
        K.max_pool_backward,
        (np.zeros((1, 3, 3, 2)), X, 2),
        {},
        ValueError,
        r"g_y has shape \(1, 3, 3, 2\), but the forward output has shape \(1, 2, 3, 2\)",
        "max-gy-shape",
    ),
    case(
        K.avg_pool_backward,
        (np.zeros((1, 2, 3, 2)), X, 2, 1),
        {},
        ValueError,
        r"g_y has shape .* forward output has shape \(1, 4, 5, 2\)",
        "avg-gy-stride",
    ),
    case(
        K.avg_pool_backward,
        (GY_POOL.astype(np.float32), X, 2),
        {},
        TypeError,
        "g_y has dtype float32",
        "avg-gy-dtype",
    ),
    case(
        K.max_pool_backward,
        (GY_POOL.tolist(), X, 2),
        {},
        TypeError,
        "g_y must be a numpy array",
        "max-gy-list",
    ),
    # ext_regions / undo_ext_regions arguments
    case(K.ext_regions, (X, 0, 3), {}, ValueError, "kh must be positive", "ext-kh-0"),
    case(K.ext_regions, (X, 3, -1), {}, ValueError, "kw must be positive", "ext-kw-neg"),
    case(K.ext_regions, (X, 2.0, 3), {}, TypeError, "kh must be an int", "ext-kh-float"),
    case(K.ext_regions, (X, 3, True), {}, TypeError, "kw must be an int", "ext-kw-bool"),
    case(K.undo_ext_regions, (COLS, X.shape, 0, 3), {}, ValueError, "kh must be positive", "undo-kh-0"),
    case(K.undo_ext_regions, (COLS, X.shape, 3, "3"), {}, TypeError, "kw must be an int", "undo-kw-str"),
    case(
        K.undo_ext_regions,
        (np.zeros((30, 17)), X.shape, 3, 3),
        {},
        ValueError,
        r"cols has shape \(30, 17\), expected \(30, 18\)",
        "undo-cols-shape",
    ),
    case(K.undo_ext_regions, (COLS, X.shape, 3, 3, 2), {}, ValueError, "cols has shape", "undo-cols-stride"),
    case(
        K.undo_ext_regions, (COLS[None], X.shape, 3, 3), {}, ValueError, "cols must have rank 2", "undo-rank"
    ),
    case(
        K.undo_ext_regions, (COLS.astype(int), X.shape, 3, 3), {}, TypeError, "cols must be float", "undo-int"
    ),
    case(
        K.undo_ext_regions, (COLS.tolist(), X.shape, 3, 3), {}, TypeError, "cols must be a numpy", "undo-list"
    ),
    case(K.undo_ext_regions, (COLS, (5, 6, 2), 3, 3), {}, ValueError, "x_shape must be 4 positive", "xs-len"),
    case(
        K.undo_ext_regions, (COLS, (1, 0, 6, 2), 3, 3), {}, ValueError, "x_shape must be 4 positive", "xs-0"
    ),
    case(K.undo_ext_regions, (COLS, None, 3, 3), {}, TypeError, "x_shape must be a sequence", "xs-none"),
    case(K.undo_ext_regions, (COLS, 5, 3, 3), {}, TypeError, "x_shape must be a sequence", "xs-int"),
    case(
        K.undo_ext_regions, (COLS, (1, 2, 6, 2), 3, 3, 1, "valid"), {}, ValueError, "padded input", "xs-small"
    ),
]


@pytest.mark.parametrize(("fn", "args", "kwargs", "exc", "match"), CASES)
def test_bad_argument_is_named(fn, args, kwargs, exc, match):
    kwargs = {"backend": "numpy", **kwargs}
    with pytest.raises(exc, match=match):
        fn(*args, **kwargs)


def test_good_arguments_pass():
    """The unmodified arguments of the table above are valid (so each case tests one fault)."""
    kw = {"backend": "numpy"}
    assert K.conv2d_forward(X, KER, B, **kw).shape == GY_CONV.shape
    assert len(K.conv2d_backward(GY_CONV, X, KER, **kw)) == 3
    for fwd, bwd in ((K.max_pool_forward, K.max_pool_backward), (K.avg_pool_forward, K.avg_pool_backward)):
        assert fwd(X, 2, **kw).shape == GY_POOL.shape
        assert bwd(GY_POOL, X, 2, **kw).shape == X.shape
    assert K.ext_regions(X, 3, 3, **kw).shape == COLS.shape
    assert K.undo_ext_regions(COLS, X.shape, 3, 3, **kw).shape == X.shape


@pytest.mark.parametrize(
    ("fn", "args", "exc", "match"),
    [
        (K.conv2d_forward, (X, np.zeros((3, 3, 3, 4)), B), ValueError, "channel mismatch"),
        (K.conv2d_backward, (np.zeros((1, 5, 6, 3)), X, KER), ValueError, "g_y has shape"),
        (K.max_pool_forward, (X.astype(np.int32), 2), TypeError, r"x \[mb, h, w, chn\] must be float"),
        (K.avg_pool_backward, (GY_POOL, X, 2, 0), ValueError, "stride must be positive"),
        (K.ext_regions, (X, 3, 3, 1, "bad"), ValueError, "padding must be"),
    ],
)
def test_checks_run_before_any_backend(backend, fn, args, exc, match):
    with pytest.raises(exc, match=match):
        fn(*args, backend=backend)


def test_get_backend_lists_valid_names():
    with pytest.raises(ValueError, match="valid backends: numba, numba-aot, numpy, better, adhoc"):
        K.get_backend("fast")


@pytest.mark.parametrize("x_shape", [(1, 5.5, 6, 2), ("1", "a", "6", "2")], ids=["float", "str"])
def test_x_shape_with_non_int_entries_is_named(x_shape):
    with pytest.raises((TypeError, ValueError), match="x_shape"):
        K.undo_ext_regions(COLS, x_shape, 3, 3, backend="numpy")


def test_unhashable_backend_is_named():
    with pytest.raises(ValueError, match="unknown backend"):
        K.conv2d_forward(X, KER, B, backend=["numpy"])
