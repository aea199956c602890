"""The seed's report lines, printed to stdout (the only prints in the library).

Formats (from the seed)::

    Model flower train started:
        Epoch 2: cost=1.132, accuracy=0.555/0.490 (158/158 secs)
    Model flower train ended in 793 secs:
    Model flower test report: accuracy = 0.500, (0 secs)

A ``dual_select`` accuracy is a pair printed ``0.896+0.541``.
"""

from __future__ import annotations

import numpy as np


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


# -- per-sample lines when the dataset has no visualize() of its own -----------


def _percent(p) -> str:
    return "[" + ",".join(f"{100 * v:2.0f}" for v in p) + "]"


def _name(names, index: int) -> str:
    if names is not None and 0 <= index < len(names):
        return str(names[index])
    return str(index)


def _select_lines(est, ans, names):
    for p, a in zip(est, ans, strict=True):
        e_name, a_name = _name(names, int(np.argmax(p))), _name(names, int(np.argmax(a)))
        mark = "O" if e_name == a_name else "X"
        yield f"estimate {_percent(p)} => estimate {e_name} : answer {a_name} => {mark}"


def _binary_lines(est, ans, names):
    for p, a in zip(est, ans, strict=True):
        e_bits, a_bits = "".join(str(int(v > 0.5)) for v in p), "".join(str(int(v > 0.5)) for v in a)
        mark = "O" if e_bits == a_bits else "X"
        yield f"estimate {_percent(p)} => estimate {e_bits} : answer {a_bits} => {mark}"


def _regression_lines(est, ans, names):
    for p, a in zip(est, ans, strict=True):
        e_str, a_str = np.array2string(np.asarray(p), precision=3), np.array2string(a, precision=3)
        yield f"estimate {e_str} : answer {a_str}"


def _dual_lines(est, ans, names, split):
    dom_names, obj_names = names if names else (None, None)
    for p, a in zip(est, ans, strict=True):
        ed, eo = int(np.argmax(p[:split])), int(np.argmax(p[split:]))
        ad, ao = int(np.argmax(a[:split])), int(np.argmax(a[split:]))
        mark = ("O" if ed == ad else "X") + ("O" if eo == ao else "X")
        yield (
            f"estimate {_percent(p[:split])}+{_percent(p[split:])} => "
            f"estimate {_name(dom_names, ed)}/{_name(obj_names, eo)} : "
            f"answer {_name(dom_names, ad)}/{_name(obj_names, ao)} => {mark}"
        )


def sample_lines(mode, est, ans, names):
    """The per-sample visualization lines for ``mode`` (a ``fastcnn.modes.Mode``)."""
    if mode.name == "dual_select":
        return list(_dual_lines(est, ans, names, mode.split))
    table = {"select": _select_lines, "binary": _binary_lines, "regression": _regression_lines}
    return list(table.get(mode.name, _regression_lines)(est, ans, names))


def print_samples(mode, est, ans, names) -> None:
    for line in sample_lines(mode, est, ans, names):
        print(line)
