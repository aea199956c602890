"""Kaggle "flowers-recognition": one folder of JPEGs per flower class."""

from __future__ import annotations

import numpy as np

from . import images
from .base import ArrayDataset

LAYOUT = "<path>/<class>/*.jpg, e.g. flowers/daisy/123.jpg (classes daisy, dandelion, rose, sunflower, tulip)"


class FlowersDataset(ArrayDataset):
    """RGB images ``[n, h, w, 3]`` resized to ``resolution``, one-hot targets, mode ``select``.

    Every visible subfolder of ``path`` is a class (sorted by name). Pixels
    are 0..1 unless ``normalize=False`` (the seed's raw 0..255). Decoded
    pixels are cached (see ``fastcnn.datasets.images``).
    """

    def __init__(self, path, resolution=(96, 96), *, normalize: bool = True, cache_dir=None,
                 use_cache: bool = True, split=(0.8, 0.05), seed: int = 1234):
        root = images.require_folder(path, LAYOUT)
        classes = images.subfolders(root)
        if not classes:
            raise ValueError(f"dataset folder {root} holds no class folders; expected layout: {LAYOUT}")
        files, labels = [], []
        for index, folder in enumerate(classes):
            found = images.image_files(folder)
            files += found
            labels += [index] * len(found)
        pixels, self.cache_path = images.load_images(
            root, files, resolution, "flowers", cache_dir=cache_dir, use_cache=use_cache
        )
        ys = np.eye(len(classes), dtype=np.float32)[labels]
        names = [c.name for c in classes]
        super().__init__("flowers", images.to_inputs(pixels, normalize), ys, "select", names,
                         split=split, seed=seed)
        self.path = root
        self.files = files
