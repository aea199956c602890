"""The book's chapter 8 four-way comparison on the flowers stack, fastcnn beside the book.

The book's ``cnn_reg_test`` notebook (BOOK-CH8-9 section 8) trains the 3-conv flower
network four ways on Flowers 96x96x3, batch 10, learning rate 0.001, 10 epochs:

- ``flowers_cnn_1``: the base stack (conv 3x3@6, max 2, conv 3x3@12, max 2, conv 3x3@24, avg 3);
- ``flowers_cnn_2``: ``['dropout', {'keep_prob': 0.6}]`` after each pool;
- ``flowers_cnn_3``: ``['noise', {'type': 'normal', 'mean': 0, 'std': 0.01}]`` before each conv;
- ``flowers_cnn_4``: ``['batch_normal']`` before each conv.

This script runs the same four through ``CnnModel.exec_all`` and prints its train seconds and
test accuracy beside the book's published ones. With ``--data-path`` it reads the Kaggle
flowers folder (``fastcnn.datasets.FlowersDataset``); without, it trains on synthetic
96x96x3 images of the same count (speed does not depend on pixel values; accuracies are
then chance and only the seconds mean something). By default it is a small run (400
images, 1 epoch); ``--full`` is the book's (every image, 10 epochs). A shorter run's
seconds are also projected to the book's step count (10 epochs of 346 steps).

Usage::

    python benchmarks/ch8_compare.py [--data-path FOLDER] [--full] [--epochs N] [--images N]
        [--backend numba] [--models 1,2,3,4]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

os.environ.setdefault("FASTCNN_COLD_START", "compile")  # time numba's own kernels (bench_common says why)

FLOWERS = ("daisy", "dandelion", "rose", "sunflower", "tulip")
BOOK_STEPS = 10 * (3460 // 10)

_BASE = [
    ["conv", {"ksize": 3, "chn": 6}], ["max", {"stride": 2}],
    ["conv", {"ksize": 3, "chn": 12}], ["max", {"stride": 2}],
    ["conv", {"ksize": 3, "chn": 24}], ["avg", {"stride": 3}],
]
_DROPOUT = ["dropout", {"keep_prob": 0.6}]
_NOISE = ["noise", {"type": "normal", "mean": 0, "std": 0.01}]
_BN = ["batch_normal"]


def _with(extra, where: str) -> list:
    """The base stack with ``extra`` after each pool (``'after'``) or before each conv (``'before'``)."""
    out = []
    for layer in _BASE:
        if where == "before" and layer[0] == "conv":
            out.append(extra)
        out.append(layer)
        if where == "after" and layer[0] in ("max", "avg"):
            out.append(extra)
    return out


#: run -> (hconfigs, the book's train seconds, the book's test accuracy) [T8 c5-c8]
RUNS = {
    "flowers_cnn_1": (_BASE, 777, 0.633),
    "flowers_cnn_2": (_with(_DROPOUT, "after"), 823, 0.557),
    "flowers_cnn_3": (_with(_NOISE, "before"), 890, 0.613),
    "flowers_cnn_4": (_with(_BN, "before"), 688, 0.530),
}


def synthetic_flowers(images: int, seed: int = 0):
    from fastcnn.datasets.base import ArrayDataset

    rng = np.random.default_rng(seed)
    xs = rng.random((images, 96, 96, 3), dtype=np.float32)
    ys = np.eye(len(FLOWERS), dtype=np.float32)[rng.integers(0, len(FLOWERS), images)]
    return ArrayDataset("flowers-synthetic", xs, ys, "select", list(FLOWERS))


def load_dataset(args):
    if args.data_path is None:
        return synthetic_flowers(args.images), "synthetic"
    from fastcnn.datasets import FlowersDataset

    return FlowersDataset(args.data_path, (96, 96)), "flowers"  # the whole folder: --images is ignored


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-path", help="the Kaggle flowers folder (default: synthetic images)")
    parser.add_argument("--full", action="store_true", help="the book's run: every image, 10 epochs")
    parser.add_argument("--epochs", type=int, default=None, help="default 1 (10 with --full)")
    parser.add_argument("--images", type=int, default=None, help="synthetic images (400; --full 4326)")
    parser.add_argument("--backend", default="numba")
    parser.add_argument("--models", default="1,2,3,4", help="which of flowers_cnn_1..4 to run")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    args.epochs = args.epochs if args.epochs is not None else (10 if args.full else 1)
    args.images = args.images if args.images is not None else (4326 if args.full else 400)

    from fastcnn import CnnModel

    ds, kind = load_dataset(args)
    names = [f"flowers_cnn_{m.strip()}" for m in args.models.split(",") if m.strip()]
    rows = []
    for name in names:
        hconfigs, book_secs, book_acc = RUNS[name]
        model = CnnModel(name, ds, None, hconfigs, backend=args.backend, seed=args.seed)
        warm = ds.get_train_data(np.arange(10))
        model.compute_step(*warm)  # first calls (JIT or cache load) out of the timing
        model = CnnModel(name, ds, None, hconfigs, backend=args.backend, seed=args.seed)
        start = time.perf_counter()
        history, acc = model.exec_all(args.epochs, 10, 0.001, report=max(1, args.epochs // 5), show_cnt=0)
        secs = history.seconds[-1] if history.seconds else time.perf_counter() - start
        steps = args.epochs * max(1, ds.train_count // 10)
        rows.append((name, book_secs, book_acc, secs, secs * BOOK_STEPS / steps, acc))

    print()
    print(f"fastcnn {args.backend} on {kind} flowers ({ds.train_count} training images), "
          f"{args.epochs} epoch(s), batch 10, lr 0.001")
    print("| run | book train s | book test acc | fastcnn train s | projected to the book's 3460 steps, s "
          "| fastcnn test acc | book / fastcnn |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, book_secs, book_acc, secs, projected, acc in rows:
        print(f"| {name} | {book_secs} | {book_acc:.3f} | {secs:.1f} | {projected:.1f} | {acc:.3f} "
              f"| {book_secs / projected:.0f}x |")
    if kind == "synthetic":
        print("(synthetic images: the accuracies are chance level; only the seconds compare)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
