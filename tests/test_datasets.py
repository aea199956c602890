"""Datasets on files the tests make: IDX files, image folders, an Office-31 layout."""

from __future__ import annotations

import gzip
import os

import numpy as np
import pytest
from PIL import Image

from fastcnn.datasets import (
    DATASETS,
    ArrayDataset,
    DigitsDataset,
    FlowersDataset,
    MnistDataset,
    Office31Dataset,
)
from fastcnn.datasets import images as image_io

# -- helpers ------------------------------------------------------------------


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


IDX_NAMES = {
    "train_images": ("train-images-idx3-ubyte", 2051),
    "train_labels": ("train-labels-idx1-ubyte", 2049),
    "test_images": ("t10k-images-idx3-ubyte", 2051),
    "test_labels": ("t10k-labels-idx1-ubyte", 2049),
}


def write_mnist(folder, n_train=40, n_test=12, gz=False, overrides=None):
    """Write the four IDX files (raw or gzipped); ``overrides`` maps role -> raw bytes."""
    rng = np.random.default_rng(0)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28)),
        "train_labels": np.arange(n_train) % 10,
        "test_images": rng.integers(0, 256, (n_test, 28, 28)),
        "test_labels": np.arange(n_test) % 10,
    }
    folder.mkdir(parents=True, exist_ok=True)
    for role, (name, magic) in IDX_NAMES.items():
        data = (overrides or {}).get(role, idx_bytes(arrays[role], magic))
        if gz:
            with gzip.open(folder / (name + ".gz"), "wb") as f:
                f.write(data)
        else:
            (folder / name).write_bytes(data)
    return arrays


def write_image(path, color, size=(20, 14), fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, format=fmt)


FLOWERS = {"daisy": 3, "rose": 2, "tulip": 4}


def make_flowers(root):
    for i, (name, count) in enumerate(FLOWERS.items()):
        for j in range(count):
            suffix = ".png" if j % 2 else ".jpg"
            write_image(root / name / f"{j}{suffix}", (40 * i, 10 * j, 200))
    return root


def make_office(root):
    layout = {"amazon": ["bike", "cup"], "webcam": ["bike", "mug"]}
    for domain, objects in layout.items():
        for obj in objects:
            for j in range(2):
                write_image(root / domain / "images" / obj / f"frame_{j}.jpg", (j * 90, 50, 120))
    return root


# -- ArrayDataset -------------------------------------------------------------


def test_registry_lists_every_dataset():
    expected = {"digits": DigitsDataset, "mnist": MnistDataset}
    expected |= {"flowers": FlowersDataset, "office31": Office31Dataset}
    assert expected == DATASETS


def test_from_splits_keeps_given_splits():
    xs = np.zeros((5, 2, 2, 1))
    ys = np.eye(5)
    ds = ArrayDataset.from_splits("t", (xs, ys), (xs[:2], ys[:2]), (xs[:3], ys[:3]), "select")
    assert (ds.train_count, len(ds.va_xs), len(ds.te_xs)) == (5, 2, 3)
    with pytest.raises(ValueError, match="validation split is empty"):
        ArrayDataset.from_splits("t", (xs, ys), (xs[:0], ys[:0]), (xs, ys), "select")


def test_datasets_provide_names_and_do_not_print():
    # the sample lines are fastcnn.report's (tests/test_model_report.py); a dataset only names things
    assert not hasattr(ArrayDataset, "visualize")
    assert all(not hasattr(cls, "visualize") for cls in DATASETS.values())
    names = (["amazon", "webcam"], ["bike", "cup", "mug"])
    ds = ArrayDataset("o", np.zeros((3, 2, 2, 1)), np.zeros((3, 5)), "dual_select", names)
    assert ds.target_names == names and ds.dual_counts == (2, 3)


# -- digits -------------------------------------------------------------------


def test_digits_shapes_and_targets():
    ds = DigitsDataset(seed=3)
    assert ds.input_shape == (8, 8, 1) and ds.output_count == 10 and ds.mode == "select"
    assert ds.target_names == [str(d) for d in range(10)]
    total = len(ds.tr_xs) + len(ds.va_xs) + len(ds.te_xs)
    assert total == 1797 and len(ds.tr_xs) == int(1797 * 0.8)
    assert ds.tr_xs.dtype == np.float32 and ds.tr_xs.min() >= 0 and ds.tr_xs.max() == 1.0
    assert np.all(ds.tr_ys.sum(axis=1) == 1)
    assert not np.array_equal(DigitsDataset(seed=4).tr_ys, ds.tr_ys)


# -- MNIST --------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_mnist_reads_idx(tmp_path, gz):
    arrays = write_mnist(tmp_path, gz=gz)
    ds = MnistDataset(tmp_path, valid_count=5)
    assert (len(ds.tr_xs), len(ds.va_xs), len(ds.te_xs)) == (35, 5, 12)
    assert ds.input_shape == (28, 28, 1) and ds.output_count == 10
    # MNIST's own test set is the test set, in order
    np.testing.assert_allclose(ds.te_xs[..., 0], arrays["test_images"] / 255, atol=1e-6)
    np.testing.assert_array_equal(ds.te_ys.argmax(1), arrays["test_labels"])
    raw = MnistDataset(tmp_path, valid_count=5, normalize=False)
    assert raw.te_xs.max() > 1 and raw.te_xs.max() <= 255


def test_mnist_limit(tmp_path):
    write_mnist(tmp_path)
    ds = MnistDataset(tmp_path, valid_count=15, limit=10)
    assert (len(ds.tr_xs), len(ds.va_xs), len(ds.te_xs)) == (10, 10, 10)


def test_mnist_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope.*train-images-idx3-ubyte.*never downloads"):
        MnistDataset(tmp_path / "nope")


def test_mnist_missing_file(tmp_path):
    write_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match="lacks t10k-labels-idx1-ubyte"):
        MnistDataset(tmp_path)


def test_mnist_bad_magic(tmp_path):
    write_mnist(tmp_path, overrides={"train_labels": idx_bytes(np.zeros(40), 2051)})
    with pytest.raises(ValueError, match=r"train-labels-idx1-ubyte has magic number 2051, expected 2049"):
        MnistDataset(tmp_path)


def test_mnist_truncated(tmp_path):
    good = idx_bytes(np.zeros((12, 28, 28)), 2051)
    write_mnist(tmp_path, gz=True, overrides={"test_images": good[:-100]})
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte.gz is truncated"):
        MnistDataset(tmp_path)


def test_mnist_header_only_truncated(tmp_path):
    write_mnist(tmp_path, overrides={"train_images": b"\x00\x00\x08"})
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte is truncated"):
        MnistDataset(tmp_path)


def test_mnist_count_mismatch(tmp_path):
    write_mnist(tmp_path, overrides={"train_labels": idx_bytes(np.zeros(39), 2049)})
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte holds 40 images but .*labels"):
        MnistDataset(tmp_path)


# -- image folders ------------------------------------------------------------


def test_flowers_loads_class_folders(tmp_path):
    root = make_flowers(tmp_path / "flowers")
    ds = FlowersDataset(root, resolution=(12, 10), split=(0.6, 0.2))
    assert ds.target_names == ["daisy", "rose", "tulip"]
    assert ds.input_shape == (12, 10, 3) and ds.output_count == 3 and ds.mode == "select"
    assert len(ds.tr_xs) + len(ds.va_xs) + len(ds.te_xs) == sum(FLOWERS.values())
    counts = np.concatenate([ds.tr_ys, ds.va_ys, ds.te_ys]).sum(axis=0)
    assert counts.tolist() == list(FLOWERS.values())
    assert ds.tr_xs.min() >= 0 and ds.tr_xs.max() <= 1
    raw = FlowersDataset(root, resolution=(12, 10), normalize=False)
    assert raw.tr_xs.max() > 1


def test_flowers_cache_is_reused(tmp_path, monkeypatch):
    root = make_flowers(tmp_path / "flowers")
    first = FlowersDataset(root, resolution=8)
    assert first.cache_path.is_file() and first.cache_path.parent == root / ".fastcnn_cache"
    assert not list(first.cache_path.parent.glob("*.tmp"))

    def refuse(*args):
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(image_io, "decode_image", refuse)
    second = FlowersDataset(root, resolution=8)
    np.testing.assert_array_equal(first.tr_xs, second.tr_xs)
    assert second.target_names == first.target_names  # the cache folder is not a class


def test_flowers_cache_key_follows_files_and_resolution(tmp_path):
    root = make_flowers(tmp_path / "flowers")
    cache = tmp_path / "cache"
    a = FlowersDataset(root, resolution=8, cache_dir=cache).cache_path
    b = FlowersDataset(root, resolution=9, cache_dir=cache).cache_path
    write_image(root / "rose" / "extra.jpg", (1, 2, 3))
    c = FlowersDataset(root, resolution=8, cache_dir=cache).cache_path
    assert len({a, b, c}) == 3 and a.parent == cache
    assert not (root / ".fastcnn_cache").exists()


def test_flowers_corrupt_cache_is_rebuilt(tmp_path):
    root = make_flowers(tmp_path / "flowers")
    path = FlowersDataset(root, resolution=8).cache_path
    path.write_bytes(b"not an npz")
    with pytest.warns(UserWarning, match=r"image cache .*flowers-8x8-.*\.npz is damaged"):
        ds = FlowersDataset(root, resolution=8)
    assert ds.tr_xs.shape[1:] == (8, 8, 3)


def test_flowers_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"absent does not exist; expected layout: <path>/<class>"):
        FlowersDataset(tmp_path / "absent")


def test_flowers_empty_folder(tmp_path):
    with pytest.raises(ValueError, match=r"holds no class folders"):
        FlowersDataset(tmp_path)


def test_flowers_class_without_images_is_kept_and_reported(tmp_path):
    root = make_flowers(tmp_path / "flowers")
    (root / "sunflower").mkdir()
    (root / "sunflower" / "notes.txt").write_text("no images here")
    with pytest.warns(UserWarning, match=r"1 empty class folders .*: sunflower"):
        ds = FlowersDataset(root, use_cache=False)
    assert ds.target_names == ["daisy", "rose", "sunflower", "tulip"]
    counts = np.concatenate([ds.tr_ys, ds.va_ys, ds.te_ys]).sum(axis=0)
    assert counts.tolist() == [3, 2, 0, 4]
    assert ds.load_report.empty_folders == ["sunflower"]
    assert ds.load_report.ignored == ["sunflower/notes.txt"]


def test_flowers_unreadable_image_is_skipped(tmp_path):
    root = make_flowers(tmp_path / "flowers")
    (root / "rose" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable files: rose/broken\.jpg"):
        ds = FlowersDataset(root)
    assert list(ds.load_report.unreadable) == ["rose/broken.jpg"]
    assert "cannot identify image file" in ds.load_report.unreadable["rose/broken.jpg"]
    counts = np.concatenate([ds.tr_ys, ds.va_ys, ds.te_ys]).sum(axis=0)
    assert counts.tolist() == list(FLOWERS.values())


def test_flowers_cache_survives_unreadable_files(tmp_path):
    """Garbage of the same size and mtime keeps the cache key: the second load never decodes."""
    root = make_flowers(tmp_path / "flowers")
    first = FlowersDataset(root, resolution=8)
    for path in [*root.rglob("*.jpg"), *root.rglob("*.png")]:
        stat = path.stat()
        path.write_bytes(b"\0" * stat.st_size)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    second = FlowersDataset(root, resolution=8)
    np.testing.assert_array_equal(first.tr_xs, second.tr_xs)
    with pytest.raises(ValueError, match=r"flowers holds no readable images .*skipped 9 unreadable files"):
        FlowersDataset(root, resolution=8, use_cache=False)


def test_bad_resolution(tmp_path):
    root = make_flowers(tmp_path / "flowers")
    with pytest.raises(ValueError, match="resolution must be"):
        FlowersDataset(root, resolution=(0, 8))


def test_office31_dual_targets(tmp_path):
    root = make_office(tmp_path / "office31")
    ds = Office31Dataset(root, resolution=(6, 6), split=(0.5, 0.25))
    assert ds.mode == "dual_select"
    assert ds.target_names == (["amazon", "webcam"], ["bike", "cup", "mug"])
    assert ds.dual_counts == (2, 3) and ds.output_count == 5
    ys = np.concatenate([ds.tr_ys, ds.va_ys, ds.te_ys])
    assert len(ys) == 8
    np.testing.assert_array_equal(ys[:, :2].sum(1), 1)
    np.testing.assert_array_equal(ys[:, 2:].sum(1), 1)
    assert ys[:, :2].sum(0).tolist() == [4, 4] and ys[:, 2:].sum(0).tolist() == [4, 2, 2]
    assert ds.cache_path.is_file()


def test_office31_domain_without_images_folder(tmp_path):
    root = make_office(tmp_path / "office31")
    (root / "dslr").mkdir()
    with pytest.raises(FileNotFoundError, match=r"dslr has no 'images' folder; expected layout"):
        Office31Dataset(root)


def test_office31_missing_folder(tmp_path):
    layout = r"office31 does not exist; expected layout: <path>/<domain>/images"
    with pytest.raises(FileNotFoundError, match=layout):
        Office31Dataset(tmp_path / "office31")


def test_unwritable_cache_warns_and_loads(tmp_path):
    root = make_flowers(tmp_path / "flowers")
    blocker = tmp_path / "cache-is-a-file"
    blocker.write_text("")
    with pytest.warns(UserWarning, match="cannot write image cache"):
        ds = FlowersDataset(root, resolution=8, cache_dir=blocker)
    assert ds.output_count == 3


def test_a_split_of_all_training_leaves_the_validation_split_empty():
    """``split=(1.0, 0.0)`` (benchmarks on synthetic data) keeps every sample for training."""
    xs = np.zeros((7, 2, 2, 1), np.float32)
    ys = np.eye(2, dtype=np.float32)[[0, 1, 0, 1, 0, 1, 0]]
    ds = ArrayDataset("s", xs, ys, "select", ["a", "b"], split=(1.0, 0.0))
    assert (ds.train_count, len(ds.va_xs), len(ds.te_xs)) == (7, 0, 0)
