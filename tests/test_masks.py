"""Dropout's and noise's counter-based random numbers (``fastcnn.kernels.masks``): the NumPy
reference's statistics, the compiled kernels against it bit for bit, and the same bits on
any thread count."""

from __future__ import annotations

import numpy as np
import pytest

from fastcnn import kernels as K
from fastcnn import runtime
from fastcnn.kernels import masks

KEY = 0x123456789ABCDEF


def _compiled() -> list[str]:
    return ["numba"] + (["numba-aot"] if K.backend_available("numba-aot") else [])


def test_uniforms_and_normals_have_their_distributions():
    u = masks.uniforms(KEY, 200_001)
    assert u.min() >= 0.0 and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 0.005 and abs(u.var() - 1 / 12) < 0.002
    assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 0.01  # neighbours independent
    z = masks.normals(KEY, 200_001)
    assert z.shape == (200_001,)
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1.0) < 0.01
    assert not np.array_equal(masks.uniforms(KEY + 1, 100), u[:100])  # another key, other numbers
    np.testing.assert_array_equal(masks.uniforms(KEY, 100), u[:100])  # a prefix: element i from (key, i)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("backend", _compiled())
def test_compiled_kernels_give_the_reference_bits(backend, dtype):
    ops = masks.bind_masks(backend)
    x = np.random.default_rng(0).standard_normal((3, 17, 11, 5)).astype(dtype)
    y, mask = ops.dropout_forward(x, KEY, 0.3)
    want_y, want_mask = masks.dropout_forward(x, KEY, 0.3)
    assert mask.dtype == np.uint8 and y.dtype == dtype
    assert y.tobytes() == want_y.tobytes() and mask.tobytes() == want_mask.tobytes()
    assert 0.25 < mask.mean() < 0.35
    np.testing.assert_array_equal(y, np.where(mask == 1, (x.astype(np.float64) / 0.3).astype(dtype), 0))
    g = x[::-1].copy()
    assert ops.dropout_backward(g, mask, 0.3).tobytes() == masks.dropout_backward(g, mask, 0.3).tobytes()
    noisy = ops.add_noise(x, KEY, 1.0, 0.5)
    assert noisy.dtype == dtype
    rtol = 1e-6 if dtype == np.float32 else 1e-13  # libm's log / cos / sin: NumPy's and LLVM's
    np.testing.assert_allclose(noisy, masks.add_noise(x, KEY, 1.0, 0.5), rtol=rtol)
    odd = x.reshape(-1)[:-1].copy()  # an odd count: the last element takes the cosine of its pair
    want = masks.add_noise(odd, KEY, 0.0, 1.0)
    np.testing.assert_allclose(ops.add_noise(odd, KEY, 0.0, 1.0), want, rtol=rtol)


def test_numba_and_numba_aot_agree_bit_for_bit():
    if not K.backend_available("numba-aot"):
        pytest.skip("numba-aot not built (make aot)")
    x = np.random.default_rng(1).standard_normal((4, 9, 9, 3)).astype(np.float32)
    jit, aot = masks.bind_masks("numba"), masks.bind_masks("numba-aot")
    assert jit.add_noise(x, KEY, 0.2, 0.3).tobytes() == aot.add_noise(x, KEY, 0.2, 0.3).tobytes()
    assert jit.dropout_forward(x, KEY, 0.6)[0].tobytes() == aot.dropout_forward(x, KEY, 0.6)[0].tobytes()


@pytest.mark.parametrize("backend", _compiled())
def test_the_same_bits_on_one_and_two_threads(backend):
    ops = masks.bind_masks(backend)
    x = np.random.default_rng(2).standard_normal((10, 96, 96, 3)).astype(np.float32)  # many tasks
    before = runtime.num_threads()
    results = []
    try:
        for threads in (1, 2):
            runtime.set_num_threads(threads)
            y, mask = ops.dropout_forward(x, KEY, 0.5)
            results.append((y, mask, ops.dropout_backward(x, mask, 0.5), ops.add_noise(x, KEY, 0.0, 1.0)))
    finally:
        runtime.set_num_threads(before)
    for one, two in zip(*results, strict=True):
        assert one.tobytes() == two.tobytes()


def test_unknown_backend_is_named():
    with pytest.raises(ValueError, match="'cuda'.*valid: numba, numba-aot, numpy"):
        masks.bind_masks("cuda")


def test_span_helpers_give_any_piece_of_a_call_the_whole_calls_numbers():
    """numba_random's span helpers (shared with the fused conv + pooling kernels): a piece whose
    first counter is ``lo`` gets the whole call's numbers, also when it starts or ends inside a
    Box-Muller pair; mode 0 leaves the values as they are."""
    from fastcnn.kernels import numba_random as nr

    x = np.random.default_rng(3).standard_normal(101).astype(np.float32)
    noisy = nr.add_noise(x, KEY, 0.1, 0.7)
    dropped, mask = nr.dropout_forward(x, KEY, 0.4)
    for lo, hi in [(0, 1), (1, 2), (1, 4), (3, 50), (50, 101), (100, 101)]:
        piece = x[lo:hi].copy()
        nr._apply_draw(piece, lo, masks.NOISE, KEY, 0.1, 0.7, np.empty(0, np.uint8))
        assert piece.tobytes() == noisy[lo:hi].tobytes(), (lo, hi)
        piece, piece_mask = x[lo:hi].copy(), np.empty(hi - lo, np.uint8)
        nr._apply_draw(piece, lo, masks.DROPOUT, KEY, 0.4, 1 / 0.4, piece_mask)
        assert piece.tobytes() == dropped[lo:hi].tobytes() and piece_mask.tobytes() == mask[lo:hi].tobytes()
    piece = x.copy()
    nr._apply_draw(piece, 0, masks.NO_MASK, KEY, 0.4, 2.5, np.empty(0, np.uint8))
    assert piece.tobytes() == x.tobytes()
