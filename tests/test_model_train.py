"""Training end to end: the digits demo, report formats, history, divergence, Ctrl-C, maps."""

from __future__ import annotations

import re
import signal
import sys
import threading

import numpy as np
import pytest
from model_helpers import digits_dataset, tiny_dataset

from fastcnn import CnnModel, TrainingDiverged, report
from fastcnn.datasets.base import ArrayDataset
from fastcnn.optim import SGD, Adam
from fastcnn.zoo import DEMO_TRAIN, get_preset

#: the demo (and the CLI's defaults): preset 'digits', numba, seed 1, 30 epochs, batch 32, lr 0.001
DEMO = DEMO_TRAIN

SMALL = [["conv", {"ksize": 3, "chn": 4}], ["max", {"stride": 2}], 8]
ACC = r"\d\.\d{3}"


def test_digits_demo_reaches_97_percent(capsys):
    model = CnnModel("digits", digits_dataset(), None, get_preset("digits"), backend="numba", seed=1)
    history, acc = model.exec_all(**DEMO, report=5, show_cnt=3)
    assert acc >= 0.97
    assert history.epochs == list(range(1, DEMO["epoch_count"] + 1))
    assert history.costs[-1] < history.costs[0] / 5
    out = capsys.readouterr().out
    assert re.search(rf"^Model digits test report: accuracy = {acc:5.3f}, \(\d+ secs\)$", out, re.M)
    assert out.count("=> O") + out.count("=> X") == 3


def test_report_lines_match_the_seed_format(capsys):
    model = CnnModel("tiny", tiny_dataset(n=40), None, SMALL, backend="numpy", seed=0)
    history, acc = model.exec_all(epoch_count=4, batch_size=8, learning_rate=0.01, report=2, show_cnt=2)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Model tiny train started:"
    assert re.fullmatch(rf"    Epoch 2: cost=\d+\.\d{{3}}, accuracy={ACC}/{ACC} \(\d+/\d+ secs\)", lines[1])
    assert re.fullmatch(rf"    Epoch 4: cost=\d+\.\d{{3}}, accuracy={ACC}/{ACC} \(\d+/\d+ secs\)", lines[2])
    assert f"cost={history.costs[1]:5.3f}, accuracy={history.train_acc[1]:5.3f}/" in lines[1]
    assert re.fullmatch(r"Model tiny train ended in \d+ secs:", lines[3])
    assert lines[4] == f"Model tiny test report: accuracy = {acc:5.3f}, (0 secs)"
    assert lines[5] == ""
    assert lines[6] == "Model tiny Visualization"
    for line in lines[7:9]:
        pattern = r"estimated distribution \[( ?\s?\d+,)*( ?\s?\d+)\] => estimate c\d : answer c\d => [OX]"
        assert re.fullmatch(pattern, line)
    assert len(lines) == 9


def test_dual_select_accuracy_prints_as_a_pair(capsys):
    model = CnnModel("office", tiny_dataset(n=40, mode="dual_select"), None, SMALL, backend="numpy", seed=0)
    history = model.train(2, 8, 0.01, report=1, progress=False)
    acc = model.test()
    out = capsys.readouterr().out
    pair = rf"{ACC}\+{ACC}"
    assert re.search(rf"^    Epoch 1: cost=\d+\.\d{{3}}, accuracy={pair}/{pair} \(\d+/\d+ secs\)$", out, re.M)
    assert re.search(rf"^Model office test report: accuracy = {ACC}\+{ACC}, \(\d+ secs\)$", out, re.M)
    assert isinstance(acc, tuple) and len(acc) == 2
    assert isinstance(history.train_acc[0], tuple) and isinstance(history.valid_acc[0], tuple)


@pytest.mark.parametrize("mode", ["binary", "regression"])
def test_other_modes_train(mode, capsys):
    model = CnnModel(mode, tiny_dataset(n=40, mode=mode), None, SMALL, backend="numpy", seed=0)
    history, acc = model.exec_all(epoch_count=6, batch_size=8, learning_rate=0.01, show_cnt=2)
    assert history.costs[-1] < history.costs[0]
    assert isinstance(acc, float)
    out = capsys.readouterr().out
    assert len(out.split("Visualization\n")[1].splitlines()) == 2


def test_history_record(capsys):
    model = CnnModel("tiny", tiny_dataset(n=40), None, SMALL, backend="numpy", seed=0)
    history = model.train(5, 8, 0.02, progress=False)
    record = history.to_dict()
    assert record["epochs"] == [1, 2, 3, 4, 5]
    assert all(len(record[k]) == 5 for k in ("costs", "train_acc", "valid_acc", "seconds"))
    assert record["seconds"] == sorted(record["seconds"])
    assert record["interrupted"] is False
    assert history.costs[-1] < history.costs[0]
    assert capsys.readouterr().out.splitlines()[0] == "Model tiny train started:"  # report=0: no epoch lines


def test_progress_bar(capsys):
    model = CnnModel("bar", tiny_dataset(n=40), None, SMALL, backend="numpy", seed=0)
    model.train(1, 8, 0.01, progress=True)
    assert "bar epoch 1" in capsys.readouterr().err
    model.train(1, 8, 0.01)  # progress=None: on only when stderr is a terminal
    assert capsys.readouterr().err == ""


def test_bad_train_arguments():
    model = CnnModel("m", tiny_dataset(), None, SMALL, backend="numpy")
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        model.train(1, 0)
    with pytest.raises(TypeError, match="epoch_count must be an int"):
        model.train(1.5)
    with pytest.raises(ValueError, match="learning_rate must be a positive number"):
        model.train(1, 8, -0.1)


def test_divergence_raises_naming_epoch_batch_and_cause(capsys):
    ds = tiny_dataset(n=40)
    ds.tr_xs = np.full_like(ds.tr_xs, 3e38)  # unnormalized input beyond float32 arithmetic
    model = CnnModel("nan", ds, None, SMALL, backend="numpy", seed=0)
    initial = {k: v.copy() for k, v in model.params.items()}
    message = r"epoch 1, batch 1/4: cost is (nan|inf)\. The learning rate \(0\.01\) is probably too high"
    with pytest.raises(TrainingDiverged, match=message + " or the input is not normalized"), \
            np.errstate(all="ignore"):
        model.train(3, 8, 0.01, progress=False)
    for key, value in model.params.items():  # the failing step was not applied
        np.testing.assert_array_equal(value, initial[key])
    assert issubclass(TrainingDiverged, FloatingPointError) and issubclass(TrainingDiverged, RuntimeError)


def test_non_finite_gradient_stops_before_the_update():
    model = CnnModel("g", tiny_dataset(n=40), None, SMALL, backend="numpy", seed=0)
    initial = {k: v.copy() for k, v in model.params.items()}
    real = model.compute_step

    def poisoned(x, y, **kw):
        cost, acc, grads = real(x, y, **kw)
        grads["layer02_full/w"][0, 0] = np.inf
        return cost, acc, grads

    model.compute_step = poisoned
    message = r"epoch 1, batch 1/4: the gradient of layer02_full/w is not finite"
    with pytest.raises(TrainingDiverged, match=message):
        model.train(1, 8, 0.01, progress=False)
    for key, value in initial.items():
        np.testing.assert_array_equal(model.params[key], value)


def test_divergence_from_a_huge_learning_rate():
    model = CnnModel("lr", tiny_dataset(n=40, mode="regression"), None, [16, 16], optimizer="sgd",
                     backend="numpy", seed=0)
    message = r"at epoch \d+, batch \d+/4: .*learning rate \(1000000\.0\) is probably too high"
    with pytest.raises(TrainingDiverged, match=message), \
            np.errstate(all="ignore"):
        model.train(20, 8, 1e6, progress=False)


def stop_at(base, n):
    """An optimizer of class ``base`` that raises KeyboardInterrupt when asked for update ``n``."""

    class StopAt(base):
        calls = 0

        def update(self, params, grads):
            self.calls += 1
            if self.calls == n:
                raise KeyboardInterrupt
            super().update(params, grads)

    return StopAt()


def _pair(optimizer):
    """A model on a fresh dataset (same seeds every time, so runs are comparable)."""
    return CnnModel("stop", tiny_dataset(n=40, seed=3), None, SMALL, backend="numpy", seed=0,
                    optimizer=optimizer)


def test_keyboard_interrupt_keeps_last_completed_step(capsys):
    model = _pair(stop_at(Adam, 5))  # 4 batches per epoch: update 5 is the first of epoch 2
    history = model.train(5, 8, 0.01, report=1, progress=False)
    out = capsys.readouterr().out
    assert "Model stop train interrupted at epoch 2 (batch 0/4); keeping the parameters" in out
    assert "train ended" not in out
    assert history.interrupted and history.epochs == [1] and len(history.costs) == 1
    reference = _pair(Adam())
    reference.train(1, 8, 0.01, progress=False)
    for key in reference.params:
        np.testing.assert_array_equal(model.params[key], reference.params[key])
    # the model is still usable
    assert 0.0 <= model.test() <= 1.0


@pytest.fixture
def sigint_handler():
    """Install a SIGINT handler for one test (``install(h)``), then restore the one before it,
    so no test depends on what an earlier test or the host left installed."""
    before = signal.getsignal(signal.SIGINT)

    def install(handler):
        signal.signal(signal.SIGINT, handler)
        return handler

    yield install
    signal.signal(signal.SIGINT, before)


class SignalMidUpdate(SGD):
    """Plain SGD that delivers a real SIGINT during update 3, between two arrays.

    Sent to the main thread itself (a signal sent to the process may land on one
    of numba's or BLAS's worker threads): ``signal.pthread_kill`` then runs the
    Python-level handler before it returns, so where the signal lands is fixed.
    """

    calls = 0

    def update(self, params, grads):
        self.calls += 1
        for i, key in enumerate(grads):
            params[key] -= self.lr * grads[key]
            if self.calls == 3 and i == 0:
                signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)


def _three_updates():
    """Parameters after exactly updates 1..3 of ``_pair`` at batch 8, lr 0.01."""
    reference = _pair(stop_at(SGD, 4))
    reference.train(3, 8, 0.01, progress=False)
    return reference.params


posix_signals = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


@posix_signals
def test_ctrl_c_during_an_update_waits_for_the_update(capsys, sigint_handler):
    sigint_handler(signal.default_int_handler)
    model = _pair(SignalMidUpdate())
    history = model.train(3, 8, 0.01, progress=False)
    assert history.interrupted and history.epochs == []
    assert "interrupted at epoch 1 (batch 2/4)" in capsys.readouterr().out
    reference = _three_updates()
    for key in reference:
        np.testing.assert_allclose(model.params[key], reference[key], rtol=1e-6)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@posix_signals
def test_a_hosts_own_sigint_handler_gets_the_signal_after_the_update(sigint_handler):
    """A notebook kernel installs its own SIGINT handler: it still never sees half an update,
    and it gets the signal exactly once, right after update 3."""
    seen = []
    model = _pair(SignalMidUpdate())
    own = sigint_handler(lambda signum, frame: seen.append({k: v.copy() for k, v in model.params.items()}))
    history = model.train(1, 8, 0.01, progress=False)  # the handler does not raise: training goes on
    assert not history.interrupted and history.epochs == [1]
    assert len(seen) == 1
    reference = _three_updates()
    for key in reference:
        np.testing.assert_allclose(seen[0][key], reference[key], rtol=1e-6)
    assert signal.getsignal(signal.SIGINT) is own


@posix_signals
def test_an_ignored_sigint_stays_ignored(sigint_handler):
    sigint_handler(signal.SIG_IGN)
    history = _pair(SignalMidUpdate()).train(1, 8, 0.01, progress=False)
    assert not history.interrupted and history.epochs == [1]
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN


def test_updates_outside_the_main_thread_run_unheld(sigint_handler):
    """Python delivers signals to the main thread only: training in another thread neither
    touches the handler nor fails."""
    sigint_handler(signal.default_int_handler)
    results = []
    worker = threading.Thread(target=lambda: results.append(_pair(SGD()).train(1, 8, 0.01, progress=False)))
    worker.start()
    worker.join()
    assert results and results[0].epochs == [1]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_visualize_draws_kernels_and_feature_maps(tmp_path, monkeypatch, capsys):
    viz = pytest.importorskip("fastcnn.viz")
    calls = {}
    real_kernels, real_maps = viz.draw_kernels, viz.draw_feature_maps

    def record_kernels(kernels, path):
        calls["kernels"] = [k.shape for k in kernels]
        return real_kernels(kernels, path)

    def record_maps(maps, path):
        calls["maps"] = [(label, m.shape) for label, m in maps]
        return real_maps(maps, path)

    monkeypatch.setattr(viz, "draw_kernels", record_kernels)
    monkeypatch.setattr(viz, "draw_feature_maps", record_maps)
    net = [["conv", {"ksize": 3, "chn": 4}], ["max", {"stride": 2}], ["conv", {"ksize": 3, "chn": 5}],
           ["avg", {"stride": 3}], 8]
    model = CnnModel("maps", tiny_dataset(n=80), None, net, show_maps=True, backend="numpy", seed=0,
                     plot_dir=tmp_path / "plots")
    written = model.load_visualize(3)
    assert calls["kernels"] == [(3, 3, 2, 4), (3, 3, 4, 5)]
    assert calls["maps"] == [("layer00_conv", (3, 6, 6, 4)), ("layer01_max", (3, 3, 3, 4)),
                             ("layer02_conv", (3, 3, 3, 5)), ("layer03_avg", (3, 1, 1, 5))]
    assert [p.name for p in written] == ["kernels.png", "feature_maps.png"]
    assert all(p.exists() and p.stat().st_size > 0 for p in written)
    out = capsys.readouterr().out
    assert out.startswith("Model maps Visualization\n")


@pytest.mark.parametrize("mode", ["select", "binary", "regression", "dual_select"])
def test_visualize_prints_through_the_report(mode, monkeypatch, capsys):
    # ArrayDataset once printed its own lines (and the seed's datasets had a visualize()):
    # now every dataset and mode prints fastcnn.report's lines, and a dataset's visualize() is unused
    class SeedStyle(ArrayDataset):
        def visualize(self, xs, estimates, answers):
            raise AssertionError("datasets do not print")

    plain = tiny_dataset(n=40, mode=mode)
    seed_style = SeedStyle("seed", plain.tr_xs, plain.tr_ys, mode, plain.target_names)
    for ds in (plain, seed_style):
        xs, ys = ds.tr_xs[:2], ds.tr_ys[:2]
        monkeypatch.setattr(ds, "get_validate_data", lambda count, xs=xs, ys=ys: (xs[:count], ys[:count]))
        model = CnnModel("v", ds, None, SMALL, backend="numpy", seed=0)
        assert model.visualize(2) == []
        expected = report.sample_lines(model.mode, model.get_estimate(xs), ys, ds.target_names)
        assert capsys.readouterr().out.splitlines() == ["Model v Visualization", *expected]
        label = "estimate" if mode == "regression" else report.LABELS[mode]
        assert len(expected) == 2 and all(line.startswith(label) for line in expected)


def test_show_maps_without_conv_layers(tmp_path, capsys):
    pytest.importorskip("fastcnn.viz")
    pool_only = CnnModel("pool", tiny_dataset(n=80), None, [["max", {"stride": 2}], 4], show_maps=True,
                         backend="numpy", seed=0, plot_dir=tmp_path)
    assert [p.name for p in pool_only.visualize(2)] == ["feature_maps.png"]
    flat = CnnModel("flat", tiny_dataset(n=80), None, [4], show_maps=True, backend="numpy",
                    plot_dir=tmp_path / "f")
    assert flat.visualize(2) == []
    with pytest.raises(ValueError, match="show_cnt"):
        flat.exec_all(1, 8, show_cnt=-1)
