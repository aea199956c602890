"""Datasets: arrays split into train / validation / test, with a mode and names."""

from .base import MODES, ArrayDataset
from .digits import DigitsDataset
from .flowers import FlowersDataset
from .mnist import MnistDataset
from .office31 import Office31Dataset

#: CLI name -> dataset class
DATASETS = {
    "digits": DigitsDataset,
    "mnist": MnistDataset,
    "flowers": FlowersDataset,
    "office31": Office31Dataset,
}

__all__ = [
    "DATASETS",
    "MODES",
    "ArrayDataset",
    "DigitsDataset",
    "FlowersDataset",
    "MnistDataset",
    "Office31Dataset",
]
