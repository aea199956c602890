"""Office-31: three domains (amazon, dslr, webcam) x 31 object classes, mode ``dual_select``."""

from __future__ import annotations

import numpy as np

from . import images
from .base import ArrayDataset

LAYOUT = "<path>/<domain>/images/<class>/*.jpg, e.g. office31/amazon/images/bike/frame_0001.jpg"


class Office31Dataset(ArrayDataset):
    """RGB images ``[n, h, w, 3]``; targets = one-hot domain then one-hot object.

    Domains are the visible subfolders of ``path`` (sorted), each holding an
    ``images`` folder of class folders; objects are the union of class names
    over all domains (sorted). ``target_names = (domains, objects)``.
    """

    def __init__(self, path, resolution=(96, 96), *, normalize: bool = True, cache_dir=None,
                 use_cache: bool = True, split=(0.8, 0.05), seed: int = 1234):
        root = images.require_folder(path, LAYOUT)
        domain_dirs = images.subfolders(root)
        if not domain_dirs:
            raise ValueError(f"dataset folder {root} holds no domain folders; expected layout: {LAYOUT}")
        class_dirs = {}
        for domain in domain_dirs:
            inner = domain / "images"
            if not inner.is_dir():
                raise FileNotFoundError(
                    f"domain folder {domain} has no 'images' folder; expected layout: {LAYOUT}"
                )
            found = images.subfolders(inner)
            if not found:
                raise ValueError(f"domain folder {inner} holds no class folders; expected layout: {LAYOUT}")
            class_dirs[domain.name] = found
        domains = [d.name for d in domain_dirs]
        objects = sorted({c.name for found in class_dirs.values() for c in found})
        files, dom_idx, obj_idx = [], [], []
        for d, domain in enumerate(domains):
            for folder in class_dirs[domain]:
                found = images.image_files(folder)
                files += found
                dom_idx += [d] * len(found)
                obj_idx += [objects.index(folder.name)] * len(found)
        pixels, self.cache_path = images.load_images(
            root, files, resolution, "office31", cache_dir=cache_dir, use_cache=use_cache
        )
        one_hot_domain = np.eye(len(domains), dtype=np.float32)[dom_idx]
        one_hot_object = np.eye(len(objects), dtype=np.float32)[obj_idx]
        ys = np.concatenate([one_hot_domain, one_hot_object], axis=1)
        super().__init__("office31", images.to_inputs(pixels, normalize), ys, "dual_select",
                         (domains, objects), split=split, seed=seed)
        self.path = root
        self.files = files
