"""Messy image folders: broken files, non-images, odd colour modes, empty class folders."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from PIL import Image
from test_datasets import make_office, write_image

from fastcnn.datasets import FlowersDataset, Office31Dataset
from fastcnn.datasets import images as image_io


def jpeg_bytes(color=(200, 30, 40), size=(20, 14)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="JPEG")
    return buf.getvalue()


def save(path, img, fmt=None, **kw):
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format=fmt, **kw)


def make_messy_flowers(root):
    """daisy: 2 RGB, 1 L, a truncated JPEG; rose: 1 RGB, P, P with transparency, RGBA, CMYK,
    garbage named .jpg, notes and OS junk; sunflower: only a broken file; tulip: empty."""
    write_image(root / "daisy" / "a.jpg", (10, 200, 30))
    write_image(root / "daisy" / "b.png", (30, 60, 90))
    save(root / "daisy" / "gray.png", Image.new("L", (20, 14), 77))
    (root / "daisy" / "cut.jpg").write_bytes(jpeg_bytes()[:318])
    write_image(root / "rose" / "a.png", (1, 2, 3))
    save(root / "rose" / "palette.png", Image.new("RGB", (20, 14), (250, 0, 0)).convert("P"))
    save(root / "rose" / "clear.gif", Image.new("P", (20, 14), 0), transparency=0)
    save(root / "rose" / "alpha.png", Image.new("RGBA", (20, 14), (0, 0, 250, 100)))
    save(root / "rose" / "print.jpg", Image.new("CMYK", (20, 14), (0, 255, 255, 0)), "JPEG")
    (root / "rose" / "garbage.jpg").write_bytes(b"\x00not an image at all" * 8)
    (root / "rose" / "notes.txt").write_text("where these came from")
    (root / "rose" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (root / "rose" / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    (root / "rose" / "._a.png").write_bytes(b"\x00\x05\x16\x07")  # macOS AppleDouble junk
    (root / "sunflower").mkdir()
    (root / "sunflower" / "only.jpg").write_bytes(jpeg_bytes()[:100])
    (root / "tulip").mkdir()
    return root


EXPECTED_SUMMARY = (
    "skipped 3 unreadable files: daisy/cut.jpg, rose/garbage.jpg, sunflower/only.jpg; "
    "ignored 4 non-image files: rose/.DS_Store, rose/._a.png, rose/Thumbs.db, rose/notes.txt; "
    "converted 5 images to RGB (CMYK: 1, L: 1, P: 2, RGBA: 1); "
    "2 empty class folders (kept as classes without samples): sunflower, tulip"
)


def load_recording(cls, root, **kw):
    """Build the dataset; return it and the texts of the UserWarnings it raised."""
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        ds = cls(root, **kw)
    return ds, [str(w.message) for w in record if issubclass(w.category, UserWarning)]


def class_counts(ds) -> list[int]:
    return np.concatenate([ds.tr_ys, ds.va_ys, ds.te_ys]).sum(axis=0).astype(int).tolist()


def test_messy_flowers_load_the_rest_and_report_once(tmp_path):
    root = make_messy_flowers(tmp_path / "flowers")
    ds, messages = load_recording(FlowersDataset, root, resolution=8)
    assert messages == [f"flowers dataset {root}: {EXPECTED_SUMMARY} (details: .load_report)"]
    assert ds.load_report.summary() == EXPECTED_SUMMARY
    assert ds.target_names == ["daisy", "rose", "sunflower", "tulip"]  # empty classes keep their index
    assert class_counts(ds) == [3, 5, 0, 0]
    assert [p.name for p in ds.files] == ["a.jpg", "b.png", "gray.png", "a.png", "alpha.png",
                                          "clear.gif", "palette.png", "print.jpg"]
    report = ds.load_report
    assert sorted(report.unreadable) == ["daisy/cut.jpg", "rose/garbage.jpg", "sunflower/only.jpg"]
    assert "cannot identify image file" in report.unreadable["rose/garbage.jpg"]
    assert report.converted == {"L": ["daisy/gray.png"], "P": ["rose/clear.gif", "rose/palette.png"],
                                "RGBA": ["rose/alpha.png"], "CMYK": ["rose/print.jpg"]}
    assert report.empty_folders == ["sunflower", "tulip"]


def test_cached_load_reports_the_same(tmp_path, monkeypatch):
    root = make_messy_flowers(tmp_path / "flowers")
    first, messages = load_recording(FlowersDataset, root, resolution=8)

    def refuse(*args):
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(image_io, "decode_image", refuse)
    second, again = load_recording(FlowersDataset, root, resolution=8)
    assert again == messages and second.load_report == first.load_report
    assert second.cache_path == first.cache_path
    np.testing.assert_array_equal(second.tr_xs, first.tr_xs)
    np.testing.assert_array_equal(second.tr_ys, first.tr_ys)


def test_converted_pixels(tmp_path):
    root = make_messy_flowers(tmp_path / "flowers")
    with pytest.warns(UserWarning, match="converted 5 images"):
        loaded = image_io.load_folders(root, image_io.subfolders(root), 4, "flowers", use_cache=False)
    by_name = {p.name: loaded.pixels[i] for i, p in enumerate(loaded.files)}
    expected = {"gray.png": (77, 77, 77), "palette.png": (250, 0, 0), "alpha.png": (0, 0, 250),
                "print.jpg": (255, 0, 0), "clear.gif": (0, 0, 0)}
    for name, rgb in expected.items():
        assert by_name[name].shape == (4, 4, 3)
        np.testing.assert_allclose(by_name[name].reshape(-1, 3), [rgb] * 16, atol=3, err_msg=name)
    assert loaded.owner.tolist() == [0, 0, 0, 1, 1, 1, 1, 1]


def test_clean_folder_has_an_empty_report_and_no_warning(tmp_path):
    for name in ("a", "b"):
        for j in range(2):
            write_image(tmp_path / "f" / name / f"{j}.png", (j, 9, 9))
    ds, messages = load_recording(FlowersDataset, tmp_path / "f", resolution=4)
    assert messages == [] and ds.load_report.clean and ds.load_report.summary() == ""


def test_nothing_readable_is_an_error_naming_the_folder(tmp_path):
    root = tmp_path / "flowers"
    (root / "daisy").mkdir(parents=True)
    (root / "daisy" / "x.jpg").write_bytes(b"garbage")
    (root / "rose").mkdir()
    (root / "rose" / "notes.txt").write_text("hi")
    with pytest.raises(ValueError, match=rf"image folder {root} holds no readable images .*"
                                         r"skipped 1 unreadable files: daisy/x\.jpg.*"
                                         r"e\.g\. daisy/x\.jpg: cannot identify image file"):
        FlowersDataset(root, resolution=4)


def test_only_non_images_is_an_error_naming_the_folder(tmp_path):
    root = tmp_path / "flowers"
    (root / "daisy").mkdir(parents=True)
    (root / "daisy" / "Thumbs.db").write_bytes(b"\xd0\xcf")
    with pytest.raises(ValueError, match=rf"image folder {root} holds no readable images .*"
                                         r"ignored 1 non-image files: daisy/Thumbs\.db"):
        FlowersDataset(root, resolution=4, use_cache=False)
    assert not (root / ".fastcnn_cache").exists()


def test_long_lists_are_shortened_in_the_warning(tmp_path):
    root = tmp_path / "flowers"
    for j in range(3):
        write_image(root / "daisy" / f"{j}.png", (j, 9, 9))
    for j in range(12):
        (root / "daisy" / f"bad{j:02d}.jpg").write_bytes(b"junk")
    ds, (message,) = load_recording(FlowersDataset, root, resolution=4)
    assert "skipped 12 unreadable files: daisy/bad00.jpg," in message
    assert "daisy/bad09.jpg ... and 2 more" in message and "bad10" not in message
    assert len(ds.load_report.unreadable) == 12


def test_messy_office31(tmp_path):
    root = make_office(tmp_path / "office31")
    (root / "amazon" / "images" / "mug").mkdir()  # empty in amazon, full in webcam
    (root / "webcam" / "images" / "cup").mkdir()
    (root / "webcam" / "images" / "cup" / "broken.jpg").write_bytes(jpeg_bytes()[:200])
    save(root / "webcam" / "images" / "bike" / "gray.png", Image.new("L", (8, 8), 5))
    (root / "webcam" / "images" / "bike" / ".DS_Store").write_bytes(b"junk")
    ds, messages = load_recording(Office31Dataset, root, resolution=4)
    assert messages == [
        f"office31 dataset {root}: skipped 1 unreadable files: webcam/images/cup/broken.jpg; "
        "ignored 1 non-image files: webcam/images/bike/.DS_Store; converted 1 images to RGB (L: 1); "
        "2 empty class folders (kept as classes without samples): amazon/images/mug, webcam/images/cup"
        " (details: .load_report)"
    ]
    assert ds.target_names == (["amazon", "webcam"], ["bike", "cup", "mug"])
    ys = np.concatenate([ds.tr_ys, ds.va_ys, ds.te_ys])
    assert ys[:, :2].sum(0).tolist() == [4, 5] and ys[:, 2:].sum(0).tolist() == [5, 2, 2]
    np.testing.assert_array_equal(ys[:, 2:].sum(1), 1)
