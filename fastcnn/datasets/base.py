"""The dataset contract the model trains on: arrays, a split, a mode, names.

A dataset holds NHWC float inputs and target rows already encoded for its
mode (one-hot rows for ``select``; domain one-hot then object one-hot for
``dual_select``; 0/1 columns for ``binary``; real columns for ``regression``).
Subclasses only load arrays and call ``ArrayDataset.__init__``.
"""

from __future__ import annotations

import numpy as np

MODES = ("select", "binary", "regression", "dual_select")


def _arrays(name, xs, ys) -> tuple[np.ndarray, np.ndarray]:
    """Coerce inputs to float32 ``[n, h, w, chn]`` and targets to ``[n, outputs]``."""
    xs = np.asarray(xs, dtype=np.float32)
    ys = np.asarray(ys, dtype=np.float32)
    if xs.ndim == 3:
        xs = xs[..., None]
    if xs.ndim != 4:
        raise ValueError(f"dataset {name!r}: inputs must be [n, h, w, chn], got shape {xs.shape}")
    if ys.ndim == 1:
        ys = ys[:, None]
    if len(xs) != len(ys):
        raise ValueError(f"dataset {name!r}: {len(xs)} inputs but {len(ys)} targets")
    return xs, ys


class ArrayDataset:
    """In-memory dataset split into train / validation / test.

    Parameters
    ----------
    name : str
        Short name used in reports.
    xs : ndarray [n, h, w, chn]
        Inputs, float32.
    ys : ndarray [n, outputs]
        Targets encoded for ``mode``.
    mode : str
        Default mode: one of ``MODES``.
    target_names : list[str] or tuple[list[str], list[str]]
        Class names (for ``dual_select``: domain names, object names).
    split : (train, validation) fractions; the rest is the test set.
    seed : int
        Seeds the split shuffle and validation sampling.
    """

    def __init__(self, name, xs, ys, mode, target_names=None, split=(0.8, 0.05), seed=1234):
        self._setup(name, mode, target_names, seed)
        xs, ys = _arrays(name, xs, ys)
        if len(xs) < 3:
            raise ValueError(f"dataset {name!r}: needs at least 3 samples to split, got {len(xs)}")
        order = self.rng.permutation(len(xs))
        n_train = max(1, int(len(xs) * split[0]))
        n_valid = max(1, int(len(xs) * split[1]))
        tr, va, te = np.split(order, [n_train, n_train + n_valid])
        if len(te) == 0:
            te = va
        self.tr_xs, self.tr_ys = xs[tr], ys[tr]
        self.va_xs, self.va_ys = xs[va], ys[va]
        self.te_xs, self.te_ys = xs[te], ys[te]

    @classmethod
    def from_splits(cls, name, train, valid, test, mode, target_names=None, seed=1234) -> ArrayDataset:
        """Build from ready-made ``(xs, ys)`` pairs, e.g. MNIST's own test set."""
        self = cls.__new__(cls)
        ArrayDataset._setup(self, name, mode, target_names, seed)
        ArrayDataset._set_splits(self, train, valid, test)
        return self

    def _set_splits(self, train, valid, test) -> None:
        """Store ready-made ``(xs, ys)`` splits after checking shapes agree."""
        parts = {"train": train, "validation": valid, "test": test}
        arrays = {}
        for part, (xs, ys) in parts.items():
            arrays[part] = _arrays(f"{self.name}/{part}", xs, ys)
            if len(arrays[part][0]) == 0:
                raise ValueError(f"dataset {self.name!r}: the {part} split is empty")
        self.tr_xs, self.tr_ys = arrays["train"]
        self.va_xs, self.va_ys = arrays["validation"]
        self.te_xs, self.te_ys = arrays["test"]

    def _setup(self, name, mode, target_names, seed) -> None:
        if mode not in MODES:
            raise ValueError(f"dataset {name!r}: unknown mode {mode!r}; valid modes: {', '.join(MODES)}")
        self.name = name
        self.mode = mode
        self.target_names = target_names
        self.rng = np.random.default_rng(seed)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, mode={self.mode!r}, "
            f"input_shape={self.input_shape}, outputs={self.output_count}, "
            f"train/valid/test={len(self.tr_xs)}/{len(self.va_xs)}/{len(self.te_xs)})"
        )

    # -- shapes -------------------------------------------------------------
    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(h, w, chn)`` of one sample."""
        return tuple(self.tr_xs.shape[1:])

    @property
    def output_count(self) -> int:
        """Width of the output layer the model adds automatically."""
        return int(self.tr_ys.shape[1])

    @property
    def dual_counts(self) -> tuple[int, int] | None:
        """``(domains, objects)`` for ``dual_select`` datasets, else None."""
        if self.mode != "dual_select" or not self.target_names:
            return None
        return len(self.target_names[0]), len(self.target_names[1])

    @property
    def train_count(self) -> int:
        return len(self.tr_xs)

    # -- the seed's accessors -----------------------------------------------
    def shuffle_train_data(self) -> np.ndarray:
        """Return a fresh permutation of the training indices."""
        return self.rng.permutation(self.train_count)

    def get_train_data(self, indices) -> tuple[np.ndarray, np.ndarray]:
        return self.tr_xs[indices], self.tr_ys[indices]

    def get_validate_data(self, count: int) -> tuple[np.ndarray, np.ndarray]:
        """A random sample of ``count`` validation items (all of them if fewer)."""
        count = min(int(count), len(self.va_xs))
        pick = self.rng.choice(len(self.va_xs), count, replace=False)
        return self.va_xs[pick], self.va_ys[pick]

    dataset_get_validate_data = get_validate_data  # the seed's name

    def get_test_data(self) -> tuple[np.ndarray, np.ndarray]:
        return self.te_xs, self.te_ys

    # -- the seed's visualization -------------------------------------------
    def visualize(self, xs, estimates, answers, *, mode: str | None = None) -> list[str]:
        """Print one line per sample: estimated distribution, estimate, answer, O/X.

        ``estimates`` are the model outputs ``[n, outputs]`` (probabilities, or
        logits that are turned into probabilities here); ``answers`` are target
        rows as stored in the dataset. ``xs`` is accepted for the seed's
        signature (images are drawn by ``fastcnn.viz.draw_samples``). ``mode``
        overrides the dataset's own (a model trained in another mode).
        Returns the printed lines.
        """
        mode = self.mode if mode is None else mode
        estimates = np.asarray(estimates, dtype=np.float64)
        answers = np.asarray(answers, dtype=np.float64)
        if estimates.ndim == 1:
            estimates = estimates[:, None]
        if answers.ndim == 1:
            answers = answers[:, None]
        if estimates.shape != answers.shape:
            raise ValueError(f"estimates have shape {estimates.shape} but answers have shape {answers.shape}")
        pairs = zip(estimates, answers, strict=True)
        lines = [describe_line(mode, self.target_names, e, a) for e, a in pairs]
        for line in lines:
            print(line)
        return lines


# ---------------------------------------------------------------------------
# per-sample descriptions, shared by ``visualize`` and ``fastcnn.viz``
# ---------------------------------------------------------------------------


def softmax_if_needed(row: np.ndarray) -> np.ndarray:
    """Return ``row`` if it already is a distribution, else its softmax."""
    row = np.asarray(row, dtype=np.float64)
    if row.min() >= 0 and abs(row.sum() - 1.0) < 1e-3:
        return row
    e = np.exp(row - row.max())
    return e / e.sum()


def sigmoid_if_needed(row: np.ndarray) -> np.ndarray:
    """Return ``row`` if all entries are probabilities, else its sigmoid."""
    row = np.asarray(row, dtype=np.float64)
    if row.min() >= 0 and row.max() <= 1:
        return row
    return 1.0 / (1.0 + np.exp(-row))


def percents(probs: np.ndarray) -> str:
    """The seed's ``[ 0, 0,100]``: integer percents, right-aligned in 2 columns (100 takes 3)."""
    return "[" + ",".join(f"{int(round(p * 100)):2d}" for p in probs) + "]"


def _name(names, index: int) -> str:
    if names is not None and 0 <= index < len(names):
        return str(names[index])
    return str(index)


def _mark(ok: bool) -> str:
    return "O" if ok else "X"


def _select(names, est, ans):
    probs = softmax_if_needed(est)
    e, a = int(np.argmax(probs)), int(np.argmax(ans))
    return percents(probs), _name(names, e), _name(names, a), _mark(e == a)


def describe(mode: str, target_names, estimate, answer) -> tuple[str, str, str, str]:
    """``(distribution, estimate name, answer name, mark)`` for one sample row."""
    est = np.asarray(estimate, dtype=np.float64).ravel()
    ans = np.asarray(answer, dtype=np.float64).ravel()
    if mode == "dual_select":
        if not target_names or len(target_names) != 2:
            raise ValueError(f"dual_select needs target_names=(domains, objects) to split {len(est)} outputs")
        domains, objects = target_names
        nd = len(domains)
        d = _select(domains, est[:nd], ans[:nd])
        o = _select(objects, est[nd:], ans[nd:])
        return f"{d[0]}+{o[0]}", f"{d[1]}/{o[1]}", f"{d[2]}/{o[2]}", f"{d[3]}/{o[3]}"
    if mode == "binary":
        probs = sigmoid_if_needed(est)
        e, a = (probs >= 0.5).astype(int), (ans >= 0.5).astype(int)
        names = target_names if target_names and len(est) == 1 else None
        est_name = ",".join(_name(names, int(v)) for v in e)
        ans_name = ",".join(_name(names, int(v)) for v in a)
        return percents(probs), est_name, ans_name, _mark(bool(np.all(e == a)))
    if mode == "regression":
        fmt = ",".join
        err = float(np.abs(est - ans).mean())
        return (
            fmt(f"{v:.3f}" for v in est),
            fmt(f"{v:.3f}" for v in est),
            fmt(f"{v:.3f}" for v in ans),
            f"error {err:.3f}",
        )
    return _select(target_names, est, ans)


def describe_line(mode: str, target_names, estimate, answer) -> str:
    """One visualize line, e.g. ``estimated distribution [ 0,100] => estimate b : answer b => O``."""
    dist, est, ans, mark = describe(mode, target_names, estimate, answer)
    if mode == "regression":
        return f"estimate {est} : answer {ans} => {mark}"
    label = "estimated probability" if mode == "binary" else "estimated distribution"
    return f"{label} {dist} => estimate {est} : answer {ans} => {mark}"
