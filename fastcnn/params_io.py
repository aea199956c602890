"""Saving and loading model parameters as ``.npz`` (no pickle), atomically (``fastcnn.atomic``).

Arrays are stored as ``layer03_conv/k``; ``__meta__`` holds a JSON string (a
0-d unicode array) describing the architecture: every layer's key, type and
parameter shapes, checked on load before anything is overwritten.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from .atomic import atomic_write, named_error

META_KEY = "__meta__"
FORMAT = "fastcnn-params"


def architecture(model) -> dict:
    """JSON-able description of ``model``'s layers and parameter shapes."""
    return {
        "format": FORMAT,
        "version": 1,
        "input_shape": list(model.input_shape),
        "layers": [
            {
                "key": layer.key,
                "type": layer.spec.type,
                "params": {n: list(a.shape) for n, a in layer.params.items()},
            }
            for layer in model.layers
        ],
    }


def save_params(model, path) -> Path:
    """Write ``model``'s parameters to ``path`` atomically (see ``fastcnn.atomic``).

    On any OSError (a full disk, no permission) the previous file at ``path``
    stays whole, no temp file is left, and the error (same errno) names ``path``.
    Temp files of earlier saves of ``path`` killed mid-write are removed.
    """
    path = Path(path)
    arrays = {key: np.asarray(a) for key, a in model.params.items()}
    arrays[META_KEY] = np.array(json.dumps(architecture(model)))
    try:
        return atomic_write(path, lambda f: np.savez(f, **arrays))
    except OSError as exc:
        raise named_error(exc, f"cannot save parameters to {path}") from exc


def _read(path: Path) -> tuple[dict, dict]:
    if not path.exists():
        raise FileNotFoundError(f"params file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, KeyError, NotImplementedError) as exc:
        raise ValueError(f"{path} is not a readable fastcnn params file (.npz): {exc}") from None
    if not isinstance(arrays, dict) or META_KEY not in arrays:
        raise ValueError(f"{path} is not a fastcnn params file: it has no {META_KEY!r} entry")
    try:
        meta = json.loads(str(arrays.pop(META_KEY)))
    except ValueError as exc:
        raise ValueError(f"{path}: unreadable {META_KEY!r} entry: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not a fastcnn params file (format {meta!r})")
    return meta, arrays


def load_params(model, path) -> None:
    """Load ``path`` into ``model`` in place; nothing changes unless every array fits."""
    path = Path(path)
    meta, arrays = _read(path)
    saved = meta.get("layers", [])
    for i, layer in enumerate(model.layers):
        if i >= len(saved):
            raise ValueError(f"{path}: the file has {len(saved)} layers, the model has {len(model.layers)}")
        if saved[i].get("type") != layer.spec.type:
            raise ValueError(
                f"{path}: layer {i} is {saved[i].get('type')!r} ({saved[i].get('key')}) in the file "
                f"but {layer.spec.type!r} ({layer.key}) in the model"
            )
    if len(saved) != len(model.layers):
        raise ValueError(f"{path}: the file has {len(saved)} layers, the model has {len(model.layers)}")
    for i, layer in enumerate(model.layers):
        for name, target in layer.params.items():
            key, file_key = f"{layer.key}/{name}", f"{saved[i]['key']}/{name}"
            if file_key not in arrays:
                raise ValueError(f"{path}: missing array {file_key!r} (model key {key!r})")
            if arrays[file_key].shape != target.shape:
                raise ValueError(
                    f"{path}: {file_key} has shape {arrays[file_key].shape} in the file "
                    f"but {key} has shape {target.shape} in the model"
                )
    for i, layer in enumerate(model.layers):
        for name, target in layer.params.items():
            np.copyto(target, arrays[f"{saved[i]['key']}/{name}"].astype(target.dtype))
