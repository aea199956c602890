"""The training loop: mini-batches, reports, history, progress bar, and the two
ways a run ends early (divergence raises, Ctrl-C returns what was learned)."""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from . import report as rep
from . import shards

#: validation sample size per epoch (the seed's 100)
VALIDATE_COUNT = 100


class TrainingDiverged(FloatingPointError, RuntimeError):
    """The cost became NaN or infinite; raised before the bad step updates anything."""


@dataclass
class History:
    """Per-epoch record of a ``train`` call (``seconds``: cumulative wall time)."""

    epochs: list = field(default_factory=list)
    costs: list = field(default_factory=list)
    train_acc: list = field(default_factory=list)
    valid_acc: list = field(default_factory=list)
    seconds: list = field(default_factory=list)
    interrupted: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


def _mean_acc(accs: list):
    """Mean accuracy; pairs (dual_select) are averaged per component."""
    if accs and isinstance(accs[0], tuple):
        return tuple(float(v) for v in np.mean(accs, axis=0))
    return float(np.mean(accs))


@contextlib.contextmanager
def hold_interrupt():
    """Delay SIGINT until the block ends, so an optimizer step is never half done.

    Whatever handler was installed (Python's default, which raises
    KeyboardInterrupt; a notebook kernel's; SIG_IGN) then gets the signal, once,
    as if it had arrived just after the block. Only the main thread receives
    signals in Python, so elsewhere (and under a handler set from C, which
    Python cannot restore) the block runs as is.
    """
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or previous is None:
        yield
        return
    caught = []
    signal.signal(signal.SIGINT, lambda signum, frame: caught.append((signum, frame)))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)  # runs a signal still pending first, into caught
    if caught:
        _deliver(previous, *caught[0])


def _deliver(handler, signum, frame) -> None:
    """Hand a held signal to the handler it was meant for."""
    if handler is signal.SIG_IGN:
        return
    if handler is signal.SIG_DFL:  # the default action (for SIGINT: end the process)
        signal.raise_signal(signum)
        return
    handler(signum, frame)


def _check_args(epoch_count, batch_size, learning_rate, report):
    checks = (("epoch_count", epoch_count, 0), ("batch_size", batch_size, 1), ("report", report, 0))
    for name, value, low in checks:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name} must be an int, got {value!r}")
        if value < low:
            raise ValueError(f"{name} must be >= {low}, got {value}")
    if not isinstance(learning_rate, (int, float)) or not learning_rate > 0:
        raise ValueError(f"learning_rate must be a positive number, got {learning_rate!r}")


def _non_finite(cost: float, grads: dict) -> str:
    """Why this step must not be applied ('' when cost and gradients are finite)."""
    if not math.isfinite(cost):
        return f"cost is {cost}"
    for key, g in grads.items():
        if not np.isfinite(g).all():
            return f"the gradient of {key} is not finite (cost {cost:.4g})"
    return ""


def _show_progress(progress) -> bool:
    if progress is None:
        return bool(getattr(sys.stderr, "isatty", lambda: False)())
    return bool(progress)


def run_training(model, epoch_count, batch_size, learning_rate, report, progress=None) -> History:
    """Train ``model`` on its dataset; see ``CnnModel.train``.

    Leaves the process alone: the process policy (``fastcnn.runtime.apply_policy``) is applied
    by whoever owns the process, the ``fastcnn`` command or the caller. Each batch's step runs as the
    model's plan says (``fastcnn.distributed.plan_for``: one process, or chunks over MPI ranks);
    the epoch's order is ``fastcnn.shards.epoch_order`` for the plan's chunk count (the classic
    shuffle for one chunk, shard by shard for more: the same for any number of processes).
    """
    from .distributed import plan_for

    _check_args(epoch_count, batch_size, learning_rate, report)
    plan = plan_for(model)
    plan.check(model, batch_size)
    # one BLAS limit for the whole run (each step's own entry then nests: a lock, not the
    # 4-20 us of limiting and restoring BLAS's threads at every step)
    with plan.session(), model._threads():
        return _train(model, plan, epoch_count, batch_size, learning_rate, report, progress)


def _train(model, plan, epoch_count, batch_size, learning_rate, report, progress) -> History:
    ds, name = model.dataset, model.name
    model.optimizer.lr = float(learning_rate)
    batch_count = shards.batch_count(ds.train_count, batch_size, plan.chunks)
    history = History()
    rep.train_started(name)
    from tqdm.auto import tqdm  # here, not at import: it is a tenth of fastcnn's import time

    start = lap = time.perf_counter()
    for epoch in range(1, epoch_count + 1):
        done = 0
        bar = tqdm(total=batch_count, desc=f"{name} epoch {epoch}", leave=False,
                   disable=not _show_progress(progress), file=sys.stderr)
        try:
            order = shards.epoch_order(ds, batch_size, plan.chunks)  # one chunk: ds.shuffle_train_data()
            costs, accs = [], []
            for n in range(batch_count):
                rows = order[n * batch_size : (n + 1) * batch_size]
                cost, acc, grads = plan.step(model, ds, rows)  # reused buffers: applied below
                bad = _non_finite(cost, grads)
                if bad:
                    raise TrainingDiverged(
                        f"Model {name}: training diverged at epoch {epoch}, batch {n + 1}/{batch_count}: "
                        f"{bad}. The learning rate ({learning_rate}) is probably too high or the input is "
                        "not normalized (e.g. raw 0..255 pixels): lower learning_rate or scale the inputs "
                        "to 0..1."
                    )
                with hold_interrupt():
                    model.optimizer.update(model.params, grads)
                done = n + 1
                costs.append(cost)
                accs.append(acc)
                bar.update(1)
                plan.check_stop()  # Ctrl-C on any rank: every rank stops after this step
            vx, vy = ds.get_validate_data(VALIDATE_COUNT)
            valid_acc = plan.evaluate(model, vx, vy)  # over MPI: rank 0's, broadcast
        except KeyboardInterrupt:
            rep.train_interrupted(name, epoch, done, batch_count)
            history.interrupted = True
            return history
        finally:
            bar.close()
        now = time.perf_counter()
        history.epochs.append(epoch)
        history.costs.append(float(np.mean(costs)))
        history.train_acc.append(_mean_acc(accs))
        history.valid_acc.append(valid_acc)
        history.seconds.append(now - start)
        if report and epoch % report == 0:
            rep.epoch_line(epoch, history.costs[-1], history.train_acc[-1], valid_acc, now - lap, now - start)
            lap = now
    rep.train_ended(name, time.perf_counter() - start)
    return history
