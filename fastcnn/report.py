"""The seed's report lines, printed to stdout (the only prints in the library).

Formats (from the seed)::

    Model flower train started:
        Epoch 2: cost=1.132, accuracy=0.555/0.490 (158/158 secs)
    Model flower train ended in 793 secs:
    Model flower test report: accuracy = 0.500, (0 secs)

A ``dual_select`` accuracy is a pair printed ``0.896+0.541``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .mathutil import sigmoid
from .modes import MODES, softmax


def format_acc(acc) -> str:
    """``0.555`` or, for a pair, ``0.896+0.541``."""
    if isinstance(acc, (tuple, list)):
        return "+".join(f"{a:5.3f}" for a in acc)
    return f"{acc:5.3f}"


def train_started(name: str) -> None:
    print(f"Model {name} train started:")


def epoch_line(epoch: int, cost: float, acc, valid_acc, lap_secs: float, total_secs: float) -> None:
    print(
        f"    Epoch {epoch}: cost={cost:5.3f}, accuracy={format_acc(acc)}/{format_acc(valid_acc)} "
        f"({int(lap_secs)}/{int(total_secs)} secs)"
    )


def train_ended(name: str, secs: float) -> None:
    print(f"Model {name} train ended in {int(secs)} secs:")


def train_interrupted(name: str, epoch: int, batch: int, batch_count: int) -> None:
    print(
        f"Model {name} train interrupted at epoch {epoch} (batch {batch}/{batch_count}); "
        "keeping the parameters of the last completed step"
    )


def test_report(name: str, acc, secs: float) -> None:
    print(f"Model {name} test report: accuracy = {format_acc(acc)}, ({int(secs)} secs)\n")


def visualize_header(name: str) -> None:
    print(f"Model {name} Visualization")


# -- per-sample lines: the one formatter, for every dataset and mode -----------
#
# ``CnnModel.visualize`` prints these and ``fastcnn.viz.draw_samples`` titles its
# images with them; datasets only provide ``target_names``. One line per sample:
#
#  select      estimated distribution [ 0, 0,100] => estimate tulip : answer tulip => O
#  binary      estimated probability [87] => estimate yes : answer yes => O
#              estimated probability [90,50] => estimate 1,0 : answer 1,1 => X
#  regression  estimate 2.500 : answer 2.000 => error 0.500
#  dual_select estimated distribution [90,10]+[100, 0, 0] => estimate amazon/bike : answer amazon/bike => O/O
#
# (the seed's ``추정확률분포 [..] => 추정 tulip : 정답 tulip => O``, in English).
# Binary names: a one-column dataset with two ``target_names`` (``["no", "yes"]``)
# prints the name of the value; otherwise each column prints 0 or 1.

#: binary: a probability (or an answer) reads as 1 when it is strictly greater than
#: this, so exactly 0.5 reads as 0 -- the rule ``Binary.accuracy`` applies to the
#: logits (``output > 0``, and sigmoid(0) == 0.5).
BINARY_THRESHOLD = 0.5

#: the word before the bracketed percents, per mode (regression prints none)
LABELS = {
    "select": "estimated distribution",
    "dual_select": "estimated distribution",
    "binary": "estimated probability",
}


class Sample(NamedTuple):
    """One sample described: the bracketed percents, estimate, answer and mark (``O``/``X``)."""

    distribution: str
    estimate: str
    answer: str
    mark: str


def _mode_name(mode) -> str:
    """The name of ``mode`` (a ``fastcnn.modes.Mode`` or its name); a ``Mode`` of
    another kind (a user's own) prints its estimates as values, like regression."""
    if not isinstance(mode, str):
        name = getattr(mode, "name", None)
        return name if name in MODES else "regression"
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; valid modes: {', '.join(MODES)}")
    return mode


def _distribution(row: np.ndarray) -> np.ndarray:
    """``row`` if it already is a distribution (the mode's estimate), else its softmax (logits)."""
    if row.min() >= 0 and abs(row.sum() - 1.0) < 1e-3:
        return row
    return softmax(row[None, :])[0]


def _probabilities(row: np.ndarray) -> np.ndarray:
    """``row`` if every entry is a probability (the mode's estimate), else its sigmoid (logits)."""
    if row.min() >= 0 and row.max() <= 1:
        return row
    return sigmoid(row)


def percents(probs) -> str:
    """The seed's ``[ 0, 0,100]``: integer percents, right-aligned in 2 columns (100 takes 3)."""
    return "[" + ",".join(f"{int(round(100 * p)):2d}" if np.isfinite(p) else "nan" for p in probs) + "]"


def _name(names, index: int) -> str:
    if names is not None and 0 <= index < len(names):
        return str(names[index])
    return str(index)


def _mark(ok: bool) -> str:
    return "O" if ok else "X"


def _select(est, ans, names) -> Sample:
    probs = _distribution(est)
    e, a = int(np.argmax(probs)), int(np.argmax(ans))
    return Sample(percents(probs), _name(names, e), _name(names, a), _mark(e == a))


def _binary(est, ans, names) -> Sample:
    probs = _probabilities(est)
    e, a = (probs > BINARY_THRESHOLD).astype(int), (ans > BINARY_THRESHOLD).astype(int)
    value_names = names if names is not None and len(est) == 1 and len(names) == 2 else None
    return Sample(
        percents(probs),
        ",".join(_name(value_names, int(v)) for v in e),
        ",".join(_name(value_names, int(v)) for v in a),
        _mark(bool(np.all(e == a))),
    )


def _regression(est, ans, names) -> Sample:
    values = ",".join(f"{v:.3f}" for v in est)
    return Sample(
        values, values, ",".join(f"{v:.3f}" for v in ans), f"error {float(np.abs(est - ans).mean()):.3f}"
    )


def _dual_split(mode, names, width: int) -> int:
    """Where the domain head ends: ``mode.split`` (a ``DualSelect``), else ``len(domains)``."""
    split = None if isinstance(mode, str) else getattr(mode, "split", None)
    if split is None:
        if not names or len(names) != 2:
            raise ValueError(f"dual_select needs target_names=(domains, objects) to split {width} outputs")
        split = len(names[0])
    return int(split)


def _dual(est, ans, names, split) -> Sample:
    domains, objects = names if names and len(names) == 2 else (None, None)
    d = _select(est[:split], ans[:split], domains)
    o = _select(est[split:], ans[split:], objects)
    return Sample(
        f"{d.distribution}+{o.distribution}",
        f"{d.estimate}/{o.estimate}",
        f"{d.answer}/{o.answer}",
        f"{d.mark}/{o.mark}",
    )


def describe(mode, estimate, answer, target_names=None) -> Sample:
    """Describe one sample row: ``estimate`` as the mode's estimate (probabilities;
    raw outputs are turned into them) and ``answer`` as the dataset's target row.

    ``mode`` is a ``fastcnn.modes.Mode`` or its name; ``target_names`` as the
    dataset's (for ``dual_select``: ``(domains, objects)``).
    """
    name = _mode_name(mode)
    est = np.asarray(estimate, dtype=np.float64).ravel()
    ans = np.asarray(answer, dtype=np.float64).ravel()
    if est.shape != ans.shape:
        raise ValueError(f"the estimate has {est.size} values but the answer has {ans.size}")
    if name == "dual_select":
        return _dual(est, ans, target_names, _dual_split(mode, target_names, est.size))
    return {"select": _select, "binary": _binary, "regression": _regression}[name](est, ans, target_names)


def sample_line(mode, estimate, answer, target_names=None) -> str:
    """The one visualize line for a sample (formats at the top of this section)."""
    s = describe(mode, estimate, answer, target_names)
    line = f"estimate {s.estimate} : answer {s.answer} => {s.mark}"
    label = LABELS.get(_mode_name(mode))
    return f"{label} {s.distribution} => {line}" if label else line


def _rows(a) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    return a[:, None] if a.ndim == 1 else a


def sample_lines(mode, estimates, answers, target_names=None) -> list[str]:
    """One ``sample_line`` per row of ``estimates`` / ``answers`` (``[n, outputs]`` each)."""
    estimates, answers = _rows(estimates), _rows(answers)
    if estimates.shape != answers.shape:
        raise ValueError(f"estimates have shape {estimates.shape} but answers have shape {answers.shape}")
    return [sample_line(mode, e, a, target_names) for e, a in zip(estimates, answers, strict=True)]


def print_samples(mode, estimates, answers, target_names=None) -> list[str]:
    """Print ``sample_lines``; returns them."""
    lines = sample_lines(mode, estimates, answers, target_names)
    for line in lines:
        print(line)
    return lines
