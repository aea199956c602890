"""Office-31: three domains (amazon, dslr, webcam) x 31 object classes, mode ``dual_select``."""

from __future__ import annotations

import numpy as np

from . import folder_rows, images
from .base import ArrayDataset

LAYOUT = "<path>/<domain>/images/<class>/*.jpg, e.g. office31/amazon/images/bike/frame_0001.jpg"


class Office31Dataset(ArrayDataset):
    """RGB images ``[n, h, w, 3]``; targets = one-hot domain then one-hot object.

    Domains are the visible subfolders of ``path`` (sorted), each holding an
    ``images`` folder of class folders; objects are the union of class names
    over all domains (sorted). ``target_names = (domains, objects)``.

    Messy folders load like ``FlowersDataset``: unreadable files skipped,
    non-images ignored, non-RGB converted, all listed in ``load_report`` and
    one warning. An empty class folder keeps its object class (and a domain
    its index), so labels depend only on the folder names.

    ``shard``: read only its rows, as ``FlowersDataset`` does.
    """

    def __init__(self, path, resolution=(96, 96), *, normalize: bool = True, cache_dir=None,
                 use_cache: bool = True, split=(0.8, 0.05), seed: int = 1234, shard=None):
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
        folders, dom_idx, obj_idx = [], [], []
        for d, domain in enumerate(domains):
            for folder in class_dirs[domain]:
                folders.append(folder)
                dom_idx.append(d)
                obj_idx.append(objects.index(folder.name))
        loaded = folder_rows.open_folders(root, folders, resolution, "office31", cache_dir=cache_dir,
                                          use_cache=use_cache, whole=shard is None)
        one_hot_domain = np.eye(len(domains), dtype=np.float32)[np.take(dom_idx, loaded.owner)]
        one_hot_object = np.eye(len(objects), dtype=np.float32)[np.take(obj_idx, loaded.owner)]
        ys = np.concatenate([one_hot_domain, one_hot_object], axis=1)
        self._setup("office31", "dual_select", (domains, objects), seed)
        self._hold_split(len(loaded.files), split, shard,
                         lambda part, rows: (images.to_inputs(loaded.read(rows), normalize), ys[rows]))
        self.path = root
        self.files = loaded.files
        self.read_files = loaded.read_files
        self.cache_path = loaded.cache_path
        self.load_report = loaded.report
