"""Pictures of a CNN, written as PNG files (works headless, no pyplot state).

Every function builds a ``matplotlib.figure.Figure`` directly, saves it with
the Agg renderer to ``path`` (creating folders) and returns the path.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .report import describe

#: how many slices / samples / filters the drawings show at most
KERNEL_SLICES = 5
MAX_SAMPLES = 8
GRID_COLUMNS = 15


def _figure(rows: int, cols: int, cell: float = 1.4, extra_h: float = 0.0):
    fig = Figure(figsize=(max(cols, 1) * cell, max(rows, 1) * cell + extra_h))
    FigureCanvasAgg(fig)
    axes = np.atleast_1d(fig.subplots(max(rows, 1), max(cols, 1), squeeze=False))
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_axis_off()
    return fig, axes


def _save(fig: Figure, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=80, bbox_inches="tight")
    return path


def _show(ax, image, title=None, cmap="gray", color="black"):
    """Draw ``[h, w]`` (gray) or ``[h, w, 3]`` (RGB, rescaled to 0..1) on ``ax``."""
    image = np.asarray(image, dtype=np.float64)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3:
        lo, hi = image.min(), image.max()
        image = (image - lo) / (hi - lo) if hi > lo else np.zeros_like(image)
        ax.imshow(image, interpolation="nearest")
    else:
        ax.imshow(image, cmap=cmap, interpolation="nearest")
    ax.set_axis_on()
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=7, color=color)


def _kernel4(kernel, name="kernel") -> np.ndarray:
    kernel = np.asarray(kernel)
    if kernel.ndim != 4:
        raise ValueError(f"{name} must be [kh, kw, xchn, ychn], got shape {kernel.shape}")
    return kernel


def draw_kernels(kernels, path) -> Path:
    """The seed's kernel drawing: per kernel ``[kh, kw, xchn, ychn]`` its first 5 ``kh x kw`` slices."""
    kernels = [_kernel4(k, f"kernels[{i}]") for i, k in enumerate(kernels)]
    if not kernels:
        raise ValueError("draw_kernels needs at least one kernel")
    fig, axes = _figure(len(kernels), KERNEL_SLICES)
    for row, kernel in enumerate(kernels):
        kh, kw = kernel.shape[:2]
        grids = kernel.reshape(kh, kw, -1).transpose(2, 0, 1)[:KERNEL_SLICES]
        for col, grid in enumerate(grids):
            _show(axes[row, col], grid, f"conv {row + 1} #{col}" if col == 0 else f"#{col}")
    return _save(fig, path)


def draw_feature_maps(maps, path, samples: int = MAX_SAMPLES) -> Path:
    """Per ``(label, [n, h, w, c])`` map one row: the first channel of each shown sample."""
    rows = []
    for i, item in enumerate(maps):
        label, fmap = item if isinstance(item, tuple) else (f"map {i}", item)
        fmap = np.asarray(fmap)
        if fmap.ndim != 4:
            raise ValueError(f"feature map {label!r} must be [n, h, w, c], got shape {fmap.shape}")
        rows.append((str(label), fmap[:samples, :, :, 0]))
    if not rows:
        raise ValueError("draw_feature_maps needs at least one feature map")
    cols = max(len(r[1]) for r in rows)
    fig, axes = _figure(len(rows), cols)
    for row, (label, images) in enumerate(rows):
        for col, image in enumerate(images):
            _show(axes[row, col], image, label if col == 0 else None)
    return _save(fig, path)


def draw_filter_grid(kernel, path, title: str = "") -> Path:
    """First-layer filters ``[kh, kw, xchn, ychn]`` as a grid, one cell per output channel.

    A 3-channel filter is drawn in color; otherwise its first input channel in gray.
    """
    kernel = _kernel4(kernel)
    count = kernel.shape[3]
    rows = math.ceil(count / GRID_COLUMNS)
    cols = math.ceil(count / rows)  # balanced rows: 16 filters -> 2 x 8, 30 -> 2 x 15
    fig, axes = _figure(rows, cols, cell=0.8, extra_h=0.4 if title else 0.0)
    for i in range(count):
        f = kernel[:, :, :, i]
        _show(axes.ravel()[i], f if f.shape[2] == 3 else f[:, :, 0], cmap="gray_r")
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def sample_photo(width: int = 160) -> np.ndarray:
    """scikit-learn's bundled ``china.jpg`` as grayscale float ``[h, w]`` in 0..1, downscaled."""
    from PIL import Image
    from sklearn.datasets import load_sample_image

    img = Image.fromarray(load_sample_image("china.jpg")).convert("L")
    height = max(1, round(img.height * width / img.width))
    return np.asarray(img.resize((width, height), Image.BILINEAR), dtype=np.float32) / 255.0


def _gray(photo) -> np.ndarray:
    if photo is None:
        return sample_photo()
    if isinstance(photo, (str, Path)):
        from PIL import Image

        with Image.open(photo) as img:
            return np.asarray(img.convert("L"), dtype=np.float32) / 255.0
    photo = np.asarray(photo, dtype=np.float32)
    if photo.ndim == 3:
        photo = photo.mean(axis=2)
    if photo.ndim != 2:
        raise ValueError(f"photo must be [h, w] or [h, w, c], got shape {photo.shape}")
    hi = photo.max()
    return photo / hi if hi > 1 else photo


def apply_filters_to_photo(kernel, path, photo=None, backend: str = "numpy") -> Path:
    """Convolve a grayscale photo with each first-layer filter and draw the responses.

    The photo (default: scikit-learn's ``china.jpg``) is repeated over the
    filter's input channels; the convolution is ``fastcnn.kernels.conv2d_forward``.
    """
    from . import kernels as K

    kernel = np.ascontiguousarray(_kernel4(kernel), dtype=np.float32)
    gray = _gray(photo)
    x = np.ascontiguousarray(np.repeat(gray[None, :, :, None], kernel.shape[2], axis=3))
    y = K.conv2d_forward(x, kernel, np.zeros(kernel.shape[3], np.float32), backend=backend)
    count = kernel.shape[3]
    cols = min(count + 1, GRID_COLUMNS)
    rows = math.ceil((count + 1) / cols)
    fig, axes = _figure(rows, cols, cell=1.6)
    _show(axes.ravel()[0], gray, "photo")
    for i in range(count):
        _show(axes.ravel()[i + 1], y[0, :, :, i], f"filter {i}", cmap="gray_r")
    return _save(fig, path)


def _history_dict(history) -> dict:
    data = history.to_dict() if hasattr(history, "to_dict") else dict(history)
    missing = [k for k in ("epochs", "costs", "train_acc", "valid_acc") if k not in data]
    if missing:
        raise ValueError(f"history lacks {', '.join(missing)}; has {', '.join(map(str, data)) or 'nothing'}")
    return data


def plot_history(history, path, title: str = "") -> Path:
    """Accuracy (train and validation) and cost per reported epoch.

    ``history``: dict, or object with ``to_dict()``, holding lists ``epochs``,
    ``costs``, ``train_acc``, ``valid_acc``; ``dual_select`` accuracies are
    ``(domain, object)`` pairs and both are drawn.
    """
    data = _history_dict(history)
    epochs = np.asarray(data["epochs"], dtype=np.float64)
    fig = Figure(figsize=(10, 4))
    FigureCanvasAgg(fig)
    ax_acc, ax_cost = fig.subplots(1, 2)
    for key, label in (("train_acc", "train"), ("valid_acc", "validation")):
        acc = np.asarray(data[key], dtype=np.float64)
        if acc.ndim == 2:
            for j, part in enumerate(("domain", "object")[: acc.shape[1]]):
                ax_acc.plot(epochs[: len(acc)], acc[:, j], marker="o", label=f"{label} {part}")
        else:
            ax_acc.plot(epochs[: len(acc)], acc, marker="o", label=label)
    ax_acc.set(xlabel="epochs", ylabel="accuracy", ylim=(0, 1.02), title="accuracy")
    ax_acc.legend(loc="lower right")
    costs = np.asarray(data["costs"], dtype=np.float64)
    ax_cost.plot(epochs[: len(costs)], costs, marker="o", color="tab:red")
    ax_cost.set(xlabel="epochs", ylabel="cost", title="cost")
    for ax in (ax_acc, ax_cost):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def draw_samples(xs, estimates, answers, target_names, path, mode=None, samples: int = 16) -> Path:
    """Sample images ``[n, h, w, c]`` titled ``estimate : answer`` (green right, red wrong).

    ``mode`` defaults from the names: a ``(domains, objects)`` pair means
    ``dual_select``, one output column means ``binary``, else ``select``.
    """
    xs = np.asarray(xs)
    estimates = np.asarray(estimates).reshape(len(xs), -1)
    answers = np.asarray(answers).reshape(len(xs), -1)
    if mode is None:
        pair = isinstance(target_names, tuple) and len(target_names) == 2
        dual = pair and not isinstance(target_names[0], str)
        mode = "dual_select" if dual else ("binary" if estimates.shape[1] == 1 else "select")
    count = min(len(xs), samples)
    if count == 0:
        raise ValueError("draw_samples needs at least one sample")
    cols = min(count, 8)
    rows = math.ceil(count / cols)
    fig, axes = _figure(rows, cols, cell=1.6)
    for i in range(count):
        _, est, ans, mark = describe(mode, estimates[i], answers[i], target_names)
        ok = "X" not in mark and not mark.startswith("error")
        _show(axes.ravel()[i], xs[i], f"{est} : {ans}", color="green" if ok else "red")
    return _save(fig, path)


def draw_param_dist(values, path, title: str = "") -> Path:
    """The book's weight histogram (``exec_all(show_params=True)``): density, 100 bins, green,
    axes [-0.2, 0.2] x [0, 20], ``mu`` and ``sigma`` written at (0.08, 15) and (0.08, 13)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    fig = Figure(figsize=(6, 4))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.hist(values, 100, density=True, facecolor="g", alpha=0.75)
    ax.axis([-0.2, 0.2, 0, 20.0])
    ax.text(0.08, 15.0, f"mu={values.mean():5.3f}")
    ax.text(0.08, 13.0, f"sigma={values.std():5.3f}")
    ax.grid(True)
    if title:
        ax.set_title(title, fontsize=9)
    return _save(fig, path)
