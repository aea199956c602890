"""Kaggle "flowers-recognition": one folder of JPEGs per flower class."""

from __future__ import annotations

import numpy as np

from . import folder_rows, images
from .base import ArrayDataset

LAYOUT = "<path>/<class>/*.jpg, e.g. flowers/daisy/123.jpg (classes daisy, dandelion, rose, sunflower, tulip)"


class FlowersDataset(ArrayDataset):
    """RGB images ``[n, h, w, 3]`` resized to ``resolution``, one-hot targets, mode ``select``.

    Every visible subfolder of ``path`` is a class (sorted by name). Pixels
    are 0..1 unless ``normalize=False`` (the seed's raw 0..255). Decoded
    pixels are cached (see ``fastcnn.datasets.images``).

    Unreadable image files are skipped, non-image files ignored, non-RGB
    images converted; ``load_report`` lists them and one warning sums them
    up. A class folder with no readable image stays a class (no samples), so
    label indices depend only on the folder names. If nothing at all is
    readable, a ValueError names the folder.

    ``shard`` (a ``fastcnn.shards.Shard``): decode only the files of its rows, or read only
    those rows from the cache (``fastcnn.datasets.folder_rows``); ``read_files`` lists what was
    read. None: every file.
    """

    def __init__(self, path, resolution=(96, 96), *, normalize: bool = True, cache_dir=None,
                 use_cache: bool = True, split=(0.8, 0.05), seed: int = 1234, shard=None):
        root = images.require_folder(path, LAYOUT)
        classes = images.subfolders(root)
        if not classes:
            raise ValueError(f"dataset folder {root} holds no class folders; expected layout: {LAYOUT}")
        loaded = folder_rows.open_folders(root, classes, resolution, "flowers", cache_dir=cache_dir,
                                          use_cache=use_cache, whole=shard is None)
        ys = np.eye(len(classes), dtype=np.float32)[loaded.owner]
        self._setup("flowers", "select", [c.name for c in classes], seed)
        self._hold_split(len(loaded.files), split, shard,
                         lambda part, rows: (images.to_inputs(loaded.read(rows), normalize), ys[rows]))
        self.path = root
        self.files = loaded.files
        self.read_files = loaded.read_files
        self.cache_path = loaded.cache_path
        self.load_report = loaded.report
