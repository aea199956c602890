"""The seed's print formats (fastcnn.report) for every mode."""

from __future__ import annotations

import numpy as np
import pytest

import fastcnn
from fastcnn import report
from fastcnn.modes import Binary, DualSelect, Mode, Regression, Select


def test_format_acc():
    assert report.format_acc(0.5) == "0.500"
    assert report.format_acc((0.896, 0.5414)) == "0.896+0.541"


def test_seed_lines(capsys):
    report.train_started("flower")
    report.epoch_line(2, 1.1324, 0.5551, 0.49, 158.7, 158.9)
    report.train_ended("flower", 793.2)
    report.test_report("flower", 0.5, 0.2)
    assert capsys.readouterr().out == (
        "Model flower train started:\n"
        "    Epoch 2: cost=1.132, accuracy=0.555/0.490 (158/158 secs)\n"
        "Model flower train ended in 793 secs:\n"
        "Model flower test report: accuracy = 0.500, (0 secs)\n\n"
    )
    report.epoch_line(10, 30.748, (0.625, 0.9), (0.78, 0.5), 750, 750)
    expected = "    Epoch 10: cost=30.748, accuracy=0.625+0.900/0.780+0.500 (750/750 secs)\n"
    assert capsys.readouterr().out == expected


# -- the one per-sample formatter: one test per mode ------------------------------

NAMES = ["daisy", "rose", "tulip"]


def test_select_line_is_the_seeds():
    # the seed: 추정확률분포 [ 0, 0, 0, 0, 0,100] => 추정 tulip : 정답 tulip => O
    est = np.array([[0.0, 0.0, 1.0], [0.01, 0.83, 0.16]])
    ans = np.array([[0, 0, 1], [1, 0, 0]])
    assert report.sample_lines(Select(), est, ans, NAMES) == [
        "estimated distribution [ 0, 0,100] => estimate tulip : answer tulip => O",
        "estimated distribution [ 1,83,16] => estimate rose : answer daisy => X",
    ]
    # the README's demo line (digits, no names: index 6 is named '6' either way)
    digits = np.eye(10)[6]
    assert report.sample_line("select", digits, digits, [str(i) for i in range(10)]) == (
        "estimated distribution [ 0, 0, 0, 0, 0, 0,100, 0, 0, 0] => estimate 6 : answer 6 => O"
    )
    assert report.sample_line("select", digits, digits) == report.sample_line("select", digits, digits, None)


def test_select_line_turns_logits_into_percents():
    line = report.sample_line("select", [0.0, 0.0, 50.0], [0, 0, 1], ["a", "b", "c"])
    assert line == "estimated distribution [ 0, 0,100] => estimate c : answer c => O"


def test_binary_line_and_the_boundary_at_one_half():
    # one column with two names: the value's name; exactly 0.5 reads as 0 (p > 0.5 is 1)
    est = np.array([[0.87], [0.2], [0.5], [0.5000001]])
    ans = np.array([[1.0], [1.0], [1.0], [1.0]])
    assert report.sample_lines(Binary(), est, ans, ["no", "yes"]) == [
        "estimated probability [87] => estimate yes : answer yes => O",
        "estimated probability [20] => estimate no : answer yes => X",
        "estimated probability [50] => estimate no : answer yes => X",
        "estimated probability [50] => estimate yes : answer yes => O",
    ]
    # an answer of exactly 0.5 reads as 0 too
    assert report.sample_line("binary", [0.5], [0.5], ["no", "yes"]) == (
        "estimated probability [50] => estimate no : answer no => O"
    )
    # several columns (names per column, not per value): 0/1 per column
    assert report.sample_line(Binary(), [0.9, 0.5], [1, 1], NAMES[:2]) == (
        "estimated probability [90,50] => estimate 1,0 : answer 1,1 => X"
    )
    assert report.BINARY_THRESHOLD == 0.5


def test_binary_boundary_agrees_with_accuracy():
    # a logit of 0 is probability 0.5: Binary.accuracy counts it as 0, so does the line
    output = np.array([[0.0], [3.0], [-3.0]])
    y = np.array([[0.0], [1.0], [0.0]])
    assert Binary().accuracy(output, y) == 1.0
    lines = report.sample_lines(Binary(), Binary().estimate(output), y, ["no", "yes"])
    assert [line.rsplit("=> ", 1)[1] for line in lines] == ["O", "O", "O"]


def test_regression_line():
    assert report.sample_lines(Regression(), np.array([[2.5]]), np.array([[2.0]]), None) == [
        "estimate 2.500 : answer 2.000 => error 0.500"
    ]
    assert report.sample_line("regression", [1.0, 2.25], [1.5, 2.0]) == (
        "estimate 1.000,2.250 : answer 1.500,2.000 => error 0.375"
    )


def test_dual_select_line_prints_both_heads():
    names = (["amazon", "webcam"], ["bike", "cup", "mug"])
    est = np.array([[0.9, 0.1, 1.0, 0, 0], [0.2, 0.8, 0, 0.6, 0.4]])
    ans = np.array([[1, 0, 1, 0, 0], [1, 0, 0, 0, 1]])
    expected = [
        "estimated distribution [90,10]+[100, 0, 0] => estimate amazon/bike : answer amazon/bike => O/O",
        "estimated distribution [20,80]+[ 0,60,40] => estimate webcam/cup : answer amazon/mug => X/X",
    ]
    assert report.sample_lines(DualSelect((2, 3)), est, ans, names) == expected
    assert report.sample_lines("dual_select", est, ans, names) == expected  # split from the names
    mixed = report.sample_line(DualSelect((2, 3)), [0.9, 0.1, 0.2, 0.7, 0.1], [1, 0, 0, 0, 1], names)
    assert mixed == (
        "estimated distribution [90,10]+[20,70,10] => estimate amazon/cup : answer amazon/mug => O/X"
    )
    with pytest.raises(ValueError, match=r"dual_select needs target_names=\(domains, objects\)"):
        report.sample_line("dual_select", est[0], ans[0])


def test_any_mode_for_any_dataset_and_bad_input():
    # a select dataset's rows shown as regression (a model trained in another mode)
    line = report.sample_line("regression", [0.5], [0.25], NAMES)
    assert line == "estimate 0.500 : answer 0.250 => error 0.250"
    with pytest.raises(ValueError, match="estimates have shape"):
        report.sample_lines(Select(), np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="unknown mode 'softmax'; valid modes: select, binary"):
        report.sample_line("softmax", [1.0], [1.0])

    class Ranking(Mode):  # a user's own mode: its estimates print as values
        name = "ranking"

    assert report.sample_line(Ranking(), [0.5], [1.0]) == "estimate 0.500 : answer 1.000 => error 0.500"


def test_print_samples_prints_the_lines(capsys):
    lines = report.print_samples(Select(), np.eye(3), np.eye(3), NAMES)
    assert capsys.readouterr().out.splitlines() == lines
    assert lines[2] == "estimated distribution [ 0, 0,100] => estimate tulip : answer tulip => O"


def test_public_names():
    assert fastcnn.CnnModelBasic is fastcnn.CnnModel
    assert fastcnn.__version__
