"""Loading by shard: the stratified epoch order, and IDX files and image folders that read only
the rows of a process's shards, giving the same arrays as a whole load."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from test_datasets import write_image, write_mnist

from fastcnn import CnnModel, chunks, distributed, shards
from fastcnn.datasets import (
    ArrayDataset,
    DigitsDataset,
    FlowersDataset,
    MnistDataset,
    Office31Dataset,
    folder_rows,
    mnist,
)
from fastcnn.datasets import images as image_io


def ranks_of(size, chunk_count=4, batch_size=32):
    return [shards.for_rank(chunk_count, batch_size, size, r) for r in range(size)]


# -- the stratified order ---------------------------------------------------------


@pytest.mark.parametrize(("train", "batch", "k"), [(1437, 32, 2), (1437, 32, 4), (100, 10, 3), (101, 7, 7),
                                                   (26, 3, 2), (50, 9, 4), (9, 20, 3)])
def test_chunk_c_draws_only_from_shard_c_and_no_row_twice(train, batch, k):
    ds = ArrayDataset("t", np.zeros((train + 60, 1, 1, 1)), np.zeros((train + 60, 2)), "select",
                      split=(train / (train + 60) + 1e-9, 0.1))
    assert ds.train_count == train
    steps = shards.batch_count(train, batch, k)
    assert steps == max(1, train // batch)  # the classic count, for every k
    bounds = shards.shard_bounds(train, batch, k)
    assert bounds[0][0] == 0 and bounds[-1][1] == train
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))
    for _ in range(2):
        order = shards.epoch_order(ds, batch, k)
        assert len(np.unique(order)) == len(order) and order.min() >= 0 and order.max() < train
        width = min(batch, train)
        assert len(order) == steps * width
        for b in range(steps):
            rows = order[b * width : (b + 1) * width]
            for c, (start, end) in enumerate(chunks.chunk_bounds(len(rows), k)):
                lo, hi = bounds[c]
                assert np.all((lo <= rows[start:end]) & (rows[start:end] < hi))


def test_shards_are_sized_like_their_chunks():
    # 26 rows, batches of 3 in 2 chunks (2 + 1 rows): 8 batches, 2 rows left over, one per shard
    assert shards.shard_bounds(26, 3, 2) == [(0, 17), (17, 26)]
    assert shards.shard_bounds(1437, 32, 4) == [(0, 360), (360, 719), (719, 1078), (1078, 1437)]
    assert shards.shard_bounds(9, 20, 3) == [(0, 3), (3, 6), (6, 9)]  # one short batch


def test_one_chunk_is_the_classic_shuffle():
    a, b = DigitsDataset(), DigitsDataset()
    assert np.array_equal(shards.epoch_order(a, 32, 1), b.shuffle_train_data())
    assert shards.batch_count(1437, 32, 1) == 1437 // 32


def test_every_process_count_draws_the_same_order_and_the_same_rows():
    whole = DigitsDataset()
    for size in (1, 2, 4):
        parts, ref = [DigitsDataset(shard=s) for s in ranks_of(size)], DigitsDataset()
        for _ in range(2):  # two epochs: the validation draws in between keep every generator in step
            order = shards.epoch_order(ref, 32, 4)
            for r, ds in enumerate(parts):
                assert np.array_equal(shards.epoch_order(ds, 32, 4), order)
                bounds = chunks.chunk_bounds(32, 4)
                first, stop = chunks.rank_chunks(4, size, r)
                mine = order[bounds[first][0] : bounds[stop - 1][1]]  # batch 0, this rank's chunks
                x, y = ds.get_train_data(mine)
                assert np.array_equal(x, whole.tr_xs[mine]) and np.array_equal(y, whole.tr_ys[mine])
            vx, _ = ref.get_validate_data(100)
            for ds in parts:
                got, _ = ds.get_validate_data(100)
                assert len(got) == (len(vx) if ds.shard.evaluation else 0)


def test_a_shard_holds_one_range_and_says_so():
    ds = DigitsDataset(shard=shards.Shard(32, 4, 1, 3, evaluation=False))
    assert ds.train_count == 1437 and (ds.train_offset, len(ds.tr_xs)) == (360, 1078 - 360)
    assert len(ds.va_xs) == len(ds.te_xs) == 0 and ds.get_test_data()[0].shape == (0, 8, 8, 1)
    assert "holds training shards 1..2 of 4: training rows 360..1077" in repr(ds)
    with pytest.raises(IndexError, match=r"rows 10..1100 asked for, but it holds training shards 1..2 of 4"):
        ds.get_train_data(np.array([10, 1100]))


def test_bad_shards_are_clear_errors():
    with pytest.raises(ValueError, match="0 <= first < stop <= count <= batch_size"):
        shards.Shard(32, 2, 1, 1)
    with pytest.raises(ValueError, match="cannot cut a training split of 5 rows into 8 shards"):
        shards.shard_bounds(5, 32, 8)
    with pytest.raises(ValueError, match="4 processes need at least 4 chunks per batch"):
        shards.for_rank(2, 32, 4, 0)
    ds = DigitsDataset(shard=shards.for_rank(4, 32, 2, 1))
    with pytest.raises(ValueError, match=r"holds training shards 2..3 of 4 \(batch 32\), but process 0 of 2 "
                       r"computes chunks 0..1"):
        shards.check_dataset(ds, 32, 4, 2, 0)
    with pytest.raises(ValueError, match=r"process 1 of 2 computes chunks 2..3 of 4 \(chunks=4, batch 64\)"):
        shards.check_dataset(ds, 64, 4, 2, 1)  # the shards of another batch size
    shards.check_dataset(ds, 32, 4, 2, 1)
    with pytest.raises(ValueError, match="process 0 evaluates"):
        shards.check_dataset(DigitsDataset(shard=shards.Shard(32, 4, 0, 2, evaluation=False)), 32, 4, 2, 0)
    tiny = ArrayDataset("tiny", np.zeros((6, 1, 1, 1)), np.zeros((6, 2)), "select", split=(0.5, 0.2))
    with pytest.raises(ValueError, match="cannot cut a training split of 3 rows into 4 shards"):
        CnnModel("t", tiny, None, [2], backend="numpy", chunks=4).train(1, 8, 0.01, 0, progress=False)


def test_training_on_a_whole_shard_equals_training_unsharded():
    hconfigs = [["conv", {"ksize": 3, "chn": 2}], ["max", {"stride": 2}], 8]
    models = [CnnModel("d", ds, None, hconfigs, seed=2, backend="numpy", chunks=2)
              for ds in (DigitsDataset(), DigitsDataset(shard=shards.Shard(32, 2, 0, 2)))]
    for model in models:
        model.train(1, 32, 0.01, 0, progress=False)
    assert all(np.array_equal(models[0].params[k], models[1].params[k]) for k in models[0].params)


class _Comm:
    def __init__(self, size, rank, others):
        self.size, self.rank, self.others = size, rank, others

    def Get_size(self):
        return self.size

    def Get_rank(self):
        return self.rank

    def allgather(self, value):
        return [value if r == self.rank else self.others for r in range(self.size)]


def test_a_load_that_fails_on_another_rank_fails_here_naming_it():
    assert distributed.load_together(_Comm(2, 0, None), lambda: 7) == 7
    with pytest.raises(ValueError, match="rank 1 of 2 could not load the dataset: OSError: gone"):
        distributed.load_together(_Comm(2, 0, "OSError: gone"), lambda: 7)
    with pytest.raises(FileNotFoundError, match="mine"):
        distributed.load_together(None, lambda: (_ for _ in ()).throw(FileNotFoundError("mine")))
    assert distributed.data_shard(None, 2, 32) is None
    assert distributed.data_shard(_Comm(1, 0, None), 2, 32) is None
    assert distributed.data_shard(_Comm(2, 1, None), 4, 32) == shards.Shard(32, 4, 2, 4, evaluation=False)


# -- IDX files ----------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_idx_rows_are_the_rows_of_the_whole_file(tmp_path, gz, monkeypatch):
    arrays = write_mnist(tmp_path, n_train=50, gz=gz)
    monkeypatch.setattr(mnist, "STREAM_BLOCK", 784 * 7)  # several blocks, the last one short
    path = next(tmp_path.glob("train-images*"))
    rows = np.array([49, 3, 3, 0, 21, 48, 7])
    got = mnist.read_idx_rows(path, 2051, 3, rows)
    assert got.dtype == np.uint8 and np.array_equal(got, arrays["train_images"][rows])
    assert mnist.read_idx_rows(path, 2051, 3, []).shape == (0, 28, 28)
    with pytest.raises(ValueError, match=r"holds 50 items; rows 3..50 asked for"):
        mnist.read_idx_rows(path, 2051, 3, [3, 50])


def test_a_truncated_gz_idx_read_by_rows_names_the_file(tmp_path):
    from test_datasets import idx_bytes

    good = idx_bytes(np.zeros((40, 28, 28)), 2051)
    write_mnist(tmp_path, gz=True, overrides={"train_images": good[:-50]})
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte.gz is truncated: .* found 31310"):
        mnist.read_idx_rows(tmp_path / "train-images-idx3-ubyte.gz", 2051, 3, [0])


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_sharded_mnist_reads_only_its_rows_and_matches_the_whole_load(tmp_path, gz, monkeypatch):
    write_mnist(tmp_path, n_train=70, n_test=12, gz=gz)
    whole = MnistDataset(tmp_path, valid_count=6)
    read = []
    real = mnist.read_idx_rows
    monkeypatch.setattr(mnist, "read_idx_rows", lambda *a: read.append(len(a[-1])) or rows.append(a[-1])
                        or real(*a))
    for r, shard in enumerate(ranks_of(2)):
        read.clear()
        rows = []
        ds = MnistDataset(tmp_path, valid_count=6, shard=shard)
        lo, hi = shard.train_range(64)
        assert (ds.train_count, ds.train_offset, len(ds.tr_xs)) == (64, lo, hi - lo) == (64, 32 * r, 32)
        assert np.array_equal(ds.tr_xs, whole.tr_xs[lo:hi]) and np.array_equal(ds.tr_ys, whole.tr_ys[lo:hi])
        assert np.all(np.diff(rows[0]) > 0)  # in file order: the shard is one stretch of the file
        if r == 0:
            assert read == [32, 6, 12]  # its training rows, then validation and test
            assert np.array_equal(ds.va_xs, whole.va_xs) and np.array_equal(ds.te_xs, whole.te_xs)
        else:
            assert read == [32, 0, 0] and len(ds.va_xs) == len(ds.te_xs) == 0


# -- image folders --------------------------------------------------------------------


def make_folders(root, per_class=6):
    for i, name in enumerate(["a", "b", "c"]):
        for j in range(per_class):
            write_image(root / name / f"{j}.png", (40 * i + j, 10 * j, 200 - j))
    return root


def spy_decode(monkeypatch):
    decoded = []
    real = image_io.decode_image

    def decode(path, resolution):
        decoded.append(path)
        return real(path, resolution)

    monkeypatch.setattr(image_io, "decode_image", decode)
    return decoded


def test_sharded_flowers_decode_only_their_files(tmp_path, monkeypatch):
    root = make_folders(tmp_path / "f")
    whole = FlowersDataset(root, resolution=6, use_cache=False)
    decoded = spy_decode(monkeypatch)
    for r, shard in enumerate(ranks_of(2, 2, 8)):
        decoded.clear()
        ds = FlowersDataset(root, resolution=6, shard=shard)
        lo, hi = shard.train_range(whole.train_count)
        assert (lo, hi) == ((0, 7) if r == 0 else (7, 14))
        assert np.array_equal(ds.tr_xs, whole.tr_xs[lo:hi]) and np.array_equal(ds.tr_ys, whole.tr_ys[lo:hi])
        held = hi - lo + (len(whole.va_xs) + len(whole.te_xs) if r == 0 else 0)
        assert len(decoded) == len(ds.read_files) == held == (11 if r == 0 else 7)
        assert sorted(decoded) == sorted(ds.read_files)
        if r == 0:
            assert np.array_equal(ds.va_xs, whole.va_xs) and np.array_equal(ds.te_ys, whole.te_ys)
    assert not (root / image_io.CACHE_DIRNAME).exists()  # a shard writes no cache


def test_sharded_flowers_read_only_their_rows_from_the_cache(tmp_path, monkeypatch):
    root = make_folders(tmp_path / "f")
    (root / "b" / "broken.png").write_bytes(b"not an image")  # the cache knows it is unreadable
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        whole = FlowersDataset(root, resolution=6)
    decoded = spy_decode(monkeypatch)
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        ds = FlowersDataset(root, resolution=6, shard=shards.Shard(8, 2, 1, 2, evaluation=False))
    assert decoded == [] and ds.cache_path == whole.cache_path
    assert np.array_equal(ds.tr_xs, whole.tr_xs[7:]) and len(ds.read_files) == 7
    pixels = folder_rows.npz_memmap(whole.cache_path, "pixels")
    assert isinstance(pixels, np.memmap) and pixels.shape == (18, 6, 6, 3)


def test_an_unreadable_image_in_a_shard_without_the_cache_is_an_error(tmp_path):
    root = make_folders(tmp_path / "f")
    (root / "a" / "9.png").write_bytes(b"not an image")
    ranks = ranks_of(2, 2, 8)
    found = []
    for shard in ranks:  # exactly one rank decodes the broken file, and says what to do
        try:
            FlowersDataset(root, resolution=6, use_cache=False, shard=shard)
        except ValueError as exc:
            found.append(str(exc))
    assert len(found) == 1 and "9.png" in found[0] and "load the dataset once whole" in found[0]


def test_sharded_office31_matches_the_whole_load(tmp_path):
    for domain in ("amazon", "webcam"):
        for obj in ("bike", "cup"):
            for j in range(3):
                write_image(tmp_path / "o" / domain / "images" / obj / f"{j}.jpg", (j * 80, 50, 120))
    whole = Office31Dataset(tmp_path / "o", resolution=5, use_cache=False)
    ds = Office31Dataset(tmp_path / "o", resolution=5, shard=shards.Shard(8, 2, 1, 2, evaluation=False))
    lo = ds.train_offset
    assert np.array_equal(ds.tr_xs, whole.tr_xs[lo:]) and np.array_equal(ds.tr_ys, whole.tr_ys[lo:])
    assert ds.target_names == whole.target_names and ds.train_count == whole.train_count


def test_only_rank_0_shows_the_loads_warnings():
    def load():
        warnings.warn("skipped 1 unreadable file", stacklevel=1)
        return 7

    with pytest.warns(UserWarning, match="skipped 1 unreadable file"):
        assert distributed.load_together(_Comm(2, 0, None), load) == 7
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert distributed.load_together(_Comm(2, 1, None), load) == 7
    assert seen == []
