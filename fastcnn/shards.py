"""Which training rows each chunk of a batch reads, so that a process loads only its own.

With ``K > 1`` chunks per batch (``fastcnn.chunks``) the training split is cut into ``K``
fixed *shards*, contiguous ranges of training indices, one per chunk and sized like it
(``shard_bounds``): shard ``c`` holds ``n_c s + r_c`` rows, where ``n_c`` is chunk ``c``'s share
of a batch (``chunk_bounds(B, K)``), ``s = train_count // B`` the classic number of batches
per epoch, and the ``R = train_count % B`` rows left over are spread one by one over the
shards (``r_c``: ``R // K``, the first ``R % K`` shards one more). Every epoch the dataset's
seeded generator permutes each shard (all ``K`` permutations, in shard order, on every
process, so the generator's state never depends on the process count), and chunk ``c`` of
batch ``b`` takes rows ``[b n_c, (b + 1) n_c)`` of shard ``c``'s permutation. Chunk ``c``
therefore only ever reads shard ``c``, and the process that computes chunks ``[first, stop)``
(``chunks.rank_chunks``) needs only shards ``[first, stop)``: one contiguous range of
training indices, which is all it loads (``Shard``; the datasets' ``shard=``).

An epoch has the classic ``train_count // B`` batches and leaves ``R`` random rows out, as
the classic order does (``r_c`` of them in shard ``c``). A split smaller than one batch gives
one short batch, chunk ``c`` being all of shard ``c`` (as the classic order gives one short
batch). ``K = 1`` (or a batch of one) is the classic order, unchanged:
``ds.shuffle_train_data()``. Shards depend on ``B`` and ``K``, never on the process count.

Under MPI, ``data_shard(comm, chunks, batch_size)`` is this rank's ``Shard`` and
``load_together`` loads on every rank and fails on every rank if one rank's load fails.

The shards are random subsets of the data whenever the training split is (every dataset
here draws its split with a seeded permutation), so stratifying by shard changes which rows
share a batch, not what a batch looks like.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from .checks import is_int
from .chunks import check_processes, chunk_bounds, rank_chunks


def chunk_count(batch_size: int, chunks: int) -> int:
    """How many chunks a batch of ``batch_size`` is cut into (``min(chunks, batch_size)``)."""
    return len(chunk_bounds(batch_size, chunks))


def shard_bounds(train_count: int, batch_size: int, chunks: int) -> list[tuple[int, int]]:
    """``[(lo, hi), ...]``: one shard of the training split per chunk of a batch, sized like
    its chunk (module docstring); a ValueError when there are fewer rows than chunks."""
    count = chunk_count(batch_size, chunks)
    if count > train_count:
        raise ValueError(f"cannot cut a training split of {train_count} rows into {count} shards (one per "
                         "chunk of a batch): use fewer chunks (--chunks) or more training data")
    steps, left = divmod(int(train_count), int(batch_size))
    bounds, lo = [], 0
    for c, (start, end) in enumerate(chunk_bounds(batch_size, count)):
        hi = lo + (end - start) * steps + left // count + (c < left % count)
        bounds.append((lo, hi))
        lo = hi
    return bounds


@dataclass(frozen=True)
class Shard:
    """What one process loads of a dataset: shards ``[first, stop)`` of the ``count`` shards
    of batches of ``batch_size`` (one contiguous range of training indices), and the
    validation and test splits when ``evaluation`` (rank 0 evaluates and broadcasts; the
    others draw the same random validation picks but hold no rows)."""

    batch_size: int
    count: int
    first: int
    stop: int
    evaluation: bool = True

    def __post_init__(self):
        values = (self.batch_size, self.count, self.first, self.stop)
        ordered = all(is_int(v) for v in values) and self.first >= 0
        if not ordered or not self.first < self.stop <= self.count <= self.batch_size:
            raise ValueError(f"a shard needs ints 0 <= first < stop <= count <= batch_size, got first="
                             f"{self.first!r}, stop={self.stop!r}, count={self.count!r}, "
                             f"batch_size={self.batch_size!r}")

    @property
    def whole(self) -> bool:
        """Whether this shard is the whole dataset (every training shard and the evaluation)."""
        return self.first == 0 and self.stop == self.count and self.evaluation

    def train_range(self, train_count: int) -> tuple[int, int]:
        """``(lo, hi)``: the training indices this shard holds in a split of ``train_count``."""
        bounds = shard_bounds(train_count, self.batch_size, self.count)
        return bounds[self.first][0], bounds[self.stop - 1][1]

    def __str__(self) -> str:
        last = self.stop - 1
        which = f"shard {self.first}" if last == self.first else f"shards {self.first}..{last}"
        return f"training {which} of {self.count}" + (" + validation/test" if self.evaluation else "")


def for_rank(chunks: int, batch_size: int, size: int, rank: int) -> Shard:
    """The shard process ``rank`` of ``size`` needs when batches of ``batch_size`` are cut into
    ``chunks`` chunks: the shards of its chunks, and the evaluation splits on rank 0."""
    count = check_processes(size, batch_size, chunks)
    return Shard(int(batch_size), count, *rank_chunks(count, size, rank), evaluation=rank == 0)


def batch_count(train_count: int, batch_size: int, chunks: int) -> int:
    """Batches per epoch: ``max(1, train_count // batch_size)``, for any chunk count (with more
    than one, after checking that the split has a row for every shard)."""
    if chunk_count(batch_size, chunks) > 1:
        shard_bounds(train_count, batch_size, chunks)
    return max(1, train_count // batch_size)


def stratified_order(perms: list[np.ndarray], batch_size: int, steps: int) -> np.ndarray:
    """The epoch's training indices, batch after batch: chunk ``c`` of batch ``b`` is rows
    ``[b n_c, (b + 1) n_c)`` of ``perms[c]`` (shard ``c``'s permutation)."""
    total = sum(len(p) for p in perms)
    if total < batch_size:  # one short batch: chunk c is the whole of shard c
        return np.concatenate(perms)
    order = np.empty((steps, batch_size), dtype=np.intp)
    for perm, (start, end) in zip(perms, chunk_bounds(batch_size, len(perms)), strict=True):
        order[:, start:end] = perm[: steps * (end - start)].reshape(steps, end - start)
    return order.ravel()


def epoch_order(ds, batch_size: int, chunks: int) -> np.ndarray:
    """One epoch's training indices in batch order (``batch_count`` batches of ``batch_size``).

    One chunk: ``ds.shuffle_train_data()``. More: ``ds.shuffle_shards(batch_size, count)``
    (every shard's permutation) laid out by ``stratified_order``; a dataset without
    ``shuffle_shards`` keeps the classic order (it cannot be loaded by shard anyway).
    """
    count = chunk_count(batch_size, chunks)
    shuffle_shards = getattr(ds, "shuffle_shards", None)
    if count == 1 or shuffle_shards is None:
        return ds.shuffle_train_data()
    steps = batch_count(ds.train_count, batch_size, chunks)
    return stratified_order(shuffle_shards(batch_size, count), batch_size, steps)


def check_dataset(ds, batch_size: int, chunks: int, size: int = 1, rank: int = 0) -> None:
    """Raise before training when ``ds`` (maybe loaded by shard) cannot serve process ``rank``
    of ``size``: its shard must be the one ``for_rank`` gives, and there must be at least one
    training row per chunk."""
    batch_count(ds.train_count, batch_size, chunks)  # e.g. more chunks than training rows
    shard = getattr(ds, "shard", None)
    if shard is None or shard.whole:
        return
    need = for_rank(chunks, batch_size, size, rank)
    name = getattr(ds, "name", type(ds).__name__)
    held = (shard.batch_size, shard.count, shard.first, shard.stop)
    if held != (need.batch_size, need.count, need.first, need.stop):
        raise ValueError(f"dataset {name!r} holds {shard} (batch {shard.batch_size}), but process {rank} of "
                         f"{size} computes chunks {need.first}..{need.stop - 1} of {need.count} "
                         f"(chunks={chunks}, batch {batch_size}) "
                         "and needs their shards: load it with shard=fastcnn.distributed.data_shard(comm, "
                         "chunks, batch_size), or without shard=")
    if rank == 0 and not shard.evaluation:
        raise ValueError(f"dataset {name!r} holds {shard} without the validation and test splits, but "
                         "process 0 evaluates: load it with Shard(..., evaluation=True) there")


def data_shard(comm, chunks: int, batch_size: int):
    """The ``fastcnn.shards.Shard`` this rank loads when batches of ``batch_size`` are cut into
    ``chunks`` chunks (pass it as the dataset's ``shard=``): the training shards of its chunks,
    and the validation and test splits on rank 0. None on a single process (everything)."""
    if comm is None or comm.Get_size() == 1:
        return None
    return for_rank(chunks, batch_size, comm.Get_size(), comm.Get_rank())


def load_together(comm, load):
    """``load()`` on every rank; when it raised on any rank, every rank raises (the first failed
    rank's error, named), so that rank 0 reports a file that only another rank reads. Warnings
    (skipped files, a damaged cache) are shown by rank 0 only: every rank would say the same."""
    quiet = comm is not None and comm.Get_rank() != 0
    try:
        with warnings.catch_warnings():
            if quiet:
                warnings.simplefilter("ignore")
            value, error = load(), None
    except Exception as exc:  # noqa: BLE001 - handed to every rank, re-raised below
        value, error = None, exc
    if comm is None or comm.Get_size() == 1:
        if error is not None:
            raise error
        return value
    failed = comm.allgather(None if error is None else f"{type(error).__name__}: {error}")
    for rank, message in enumerate(failed):
        if message is not None:
            if rank == comm.Get_rank():
                raise error
            raise ValueError(f"rank {rank} of {comm.Get_size()} could not load the dataset: {message}")
    return value
