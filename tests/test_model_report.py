"""The seed's print formats (fastcnn.report) for every mode."""

from __future__ import annotations

import numpy as np

import fastcnn
from fastcnn import report
from fastcnn.modes import Binary, DualSelect, Regression, Select


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


def test_sample_lines_per_mode():
    names = ["daisy", "rose", "tulip"]
    est = np.array([[0.0, 0.0, 1.0], [0.01, 0.83, 0.16]])
    ans = np.array([[0, 0, 1], [1, 0, 0]])
    assert report.sample_lines(Select(), est, ans, names) == [
        "estimate [ 0, 0,100] => estimate tulip : answer tulip => O",
        "estimate [ 1,83,16] => estimate rose : answer daisy => X",
    ]
    assert report.sample_lines(Binary(), np.array([[0.9, 0.2]]), np.array([[1, 1]]), None) == [
        "estimate [90,20] => estimate 10 : answer 11 => X"
    ]
    assert report.sample_lines(Regression(), np.array([[1.5]]), np.array([[2.0]]), None) == [
        "estimate [1.5] : answer [2.]"
    ]
    dual = DualSelect((2, 3))
    lines = report.sample_lines(dual, np.array([[0.9, 0.1, 0.2, 0.7, 0.1]]), np.array([[1, 0, 0, 0, 1]]),
                                (["amazon", "dslr"], names))
    assert lines == ["estimate [90,10]+[20,70,10] => estimate amazon/rose : answer amazon/tulip => OX"]


def test_public_names():
    assert fastcnn.CnnModelBasic is fastcnn.CnnModel
    assert fastcnn.__version__
