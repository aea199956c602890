"""One global batch in a fixed number of chunks, their gradients summed in one fixed order.

This is what makes data-parallel training (``fastcnn.distributed``) give the same bits for
any number of processes. A global batch of ``B`` samples is cut into ``K`` chunks
(``chunk_bounds``: contiguous, sizes differing by at most one; ``K`` is an option, never
the process count). Each chunk's gradient is computed by its own forward and backward
pass (the dense layers' BLAS products sum over the batch inside BLAS, so a chunk must be a
product of its own), weighted by ``n_c / B`` (the modes' losses are means), and the
weighted chunk gradients are summed over a fixed binary tree (``tree_sum``: the sum over
chunks ``[lo, hi)`` is ``sum[lo, mid) + sum[mid, hi)``, ``mid = (lo + hi) // 2``). One
process evaluates that tree itself; ``N`` processes each evaluate the subtrees whose chunks
they own (``owned_nodes``) and the results are combined over the same tree: every addition
is the same float operation on the same operands, so the result is the same bits.

``K = 1`` is the classic step (``CnnModel.compute_step``), unchanged. ``K > 1`` on one
process (``CnnModel(..., chunks=K)``, ``fastcnn train --chunks K``) is the same computation
as ``K`` chunks over any number of processes. Per chunk, the model's random generator
(dropout masks, noise) restarts from a state derived from one draw per step and the chunk
index, so the masks do not depend on which process runs the chunk. Batch normalization
sees each chunk as its batch ("ghost batch" statistics).

Which samples fill a batch is ``fastcnn.shards``'s: with ``K > 1`` chunk ``c`` always draws
from the fixed shard ``c`` of the training split, so a process loads only its chunks' shards.
"""

from __future__ import annotations

import numpy as np

from .checks import is_int

#: chunks per global batch of ``fastcnn train`` (and of a model given a ``comm``): every run
#: that is to give the same bits must use the same count; at most this many processes share
#: a batch (more: ``--chunks``). 2, the least that lets ``mpiexec -n 2`` equal a plain run: on
#: one process 2 chunks cost about 12% per step (SimpleConvNet at batch 100, flowers at batch
#: 10), 4 chunks 25-50%, 8 chunks 45-150% (docs/distributed.md, benchmarks/mpi_scaling.py).
DEFAULT_CHUNKS = 2


def check_chunks(chunks) -> int:
    """``chunks`` as an int >= 1, or a ValueError naming it."""
    if not is_int(chunks) or chunks < 1:
        raise ValueError(f"chunks must be an int >= 1, got {chunks!r}")
    return int(chunks)


def chunk_bounds(batch_size: int, chunks: int) -> list[tuple[int, int]]:
    """``[(start, stop), ...]``: ``min(chunks, batch_size)`` contiguous slices of a batch,
    the first ``batch_size % count`` of them one sample longer."""
    count = min(int(chunks), int(batch_size))
    size, extra = divmod(int(batch_size), count)
    bounds, start = [], 0
    for c in range(count):
        stop = start + size + (c < extra)
        bounds.append((start, stop))
        start = stop
    return bounds


def check_processes(size: int, batch_size: int, chunks: int) -> int:
    """The chunk count of a batch of ``batch_size``, or a ValueError when it is smaller than the
    process count ``size`` (every process computes at least one chunk)."""
    count = min(int(chunks), int(batch_size))
    if count < size:
        raise ValueError(f"{size} processes need at least {size} chunks per batch, but the batch of "
                         f"{batch_size} is cut into {count} (chunks={chunks}): raise chunks (--chunks) to at "
                         "least the process count, the same on every run that is to give the same bits")
    return count


def rank_chunks(count: int, size: int, rank: int) -> tuple[int, int]:
    """The chunks ``[first, stop)`` that process ``rank`` of ``size`` computes (contiguous)."""
    return rank * count // size, (rank + 1) * count // size


def owned_nodes(lo: int, hi: int, first: int, stop: int) -> list[tuple[int, int]]:
    """The largest nodes of the tree over chunks ``[lo, hi)`` that lie inside ``[first, stop)``,
    in chunk order: what a process owning those chunks sums by itself."""
    if stop <= lo or hi <= first:
        return []
    if first <= lo and hi <= stop:
        return [(lo, hi)]
    mid = (lo + hi) // 2
    return owned_nodes(lo, mid, first, stop) + owned_nodes(mid, hi, first, stop)


def tree_sum(lo: int, hi: int, value):
    """The sum over chunks ``[lo, hi)`` along the fixed tree; ``value(lo, hi)`` gives a node's
    value when known (a leaf, or a subtree summed elsewhere) and None otherwise. Values are
    arrays or dicts of arrays (summed key by key). Leaves are asked for in chunk order."""
    known = value(lo, hi)
    if known is not None:
        return known
    if hi - lo < 2:
        raise ValueError(f"tree_sum: no value for chunk {lo}")
    mid = (lo + hi) // 2
    left = tree_sum(lo, mid, value)
    right = tree_sum(mid, hi, value)
    if isinstance(left, dict):
        return {key: left[key] + right[key] for key in left}
    return left + right


def weighted(grads: dict, weight) -> dict:
    """Every gradient times ``weight`` (new arrays, in the gradients' dtype)."""
    return {key: g * g.dtype.type(weight) for key, g in grads.items()}


def chunk_rng_states(model) -> np.ndarray:
    """One draw from the model's generator per step: the seed of every chunk's generator."""
    return model.rng.integers(0, 2**63, dtype=np.int64)


def restart_rng(model, step_key, chunk: int) -> None:
    """Restart the model's generator (dropout, noise) for ``chunk`` of the step ``step_key``."""
    seq = np.random.SeedSequence([int(step_key), int(chunk)])
    model.rng.bit_generator.state = type(model.rng.bit_generator)(seq).state


class ChunkResult:
    """What one process computed for its chunks: per chunk cost and accuracy, and the summed
    (weighted) gradients of the tree nodes it owns, keyed ``(lo, hi)``."""

    def __init__(self):
        self.costs: dict[int, float] = {}
        self.accs: dict[int, object] = {}
        self.nodes: dict[tuple[int, int], dict] = {}


def compute_chunks(model, x, y, bounds, first: int, stop: int) -> ChunkResult:
    """Gradients of chunks ``[first, stop)`` of a batch cut at ``bounds``; ``x, y`` hold
    exactly those chunks' samples (from ``bounds[first][0]`` on). Each owned tree node is
    summed here, leaves in chunk order, each leaf computed just before it is used (so the
    step's reused buffers, ``compute_step(reuse_grads=True)``, are scaled away in time)."""
    total = bounds[-1][1]
    offset = bounds[first][0]
    step_key = chunk_rng_states(model)
    state_after = model.rng.bit_generator.state
    result = ChunkResult()

    def leaf(lo, hi):
        if hi - lo != 1:
            return None
        start, end = bounds[lo]
        rows = slice(start - offset, end - offset)
        restart_rng(model, step_key, lo)
        cost, acc, grads = model.compute_step(x[rows], y[rows], reuse_grads=True)
        result.costs[lo], result.accs[lo] = cost, acc
        return weighted(grads, (end - start) / total)

    for node in owned_nodes(0, len(bounds), first, stop):
        result.nodes[node] = tree_sum(*node, leaf)
    model.rng.bit_generator.state = state_after
    return result


def combine_scores(bounds, costs: dict, accs: dict):
    """The batch's cost and accuracy from its chunks' (means weighted by chunk size, in
    chunk order; accuracy pairs of ``dual_select`` component by component)."""
    total = bounds[-1][1]
    cost = 0.0
    for c, (start, end) in enumerate(bounds):
        cost += costs[c] * (end - start) / total
    first = accs[0]
    if isinstance(first, tuple):
        return cost, tuple(sum(accs[c][i] * (e - s) / total for c, (s, e) in enumerate(bounds))
                           for i in range(len(first)))
    return cost, sum(accs[c] * (e - s) / total for c, (s, e) in enumerate(bounds))


def local_step(model, x, y, chunks: int):
    """``(cost, accuracy, grads)`` of one batch on one process, in ``chunks`` chunks (the
    classic ``compute_step`` when ``chunks == 1``)."""
    if chunks == 1:
        return model.compute_step(x, y, reuse_grads=True)
    bounds = chunk_bounds(len(x), chunks)
    result = compute_chunks(model, x, y, bounds, 0, len(bounds))
    cost, acc = combine_scores(bounds, result.costs, result.accs)
    return cost, acc, result.nodes[(0, len(bounds))]
