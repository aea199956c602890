"""The book's flowers run, timed here: the 3-conv flower network, batch 10, 10 epochs.

The book's notebook trained this network on the 4,326 Kaggle flower photos at
96x96x3 (80% = 3,460 training images) and took 486 s for 10 epochs (about
140 ms per step). The photos are not shipped here, so this script trains the
same architecture on synthetic data of exactly that size and shape (5 classes)
and prints the seed's report lines. Speed does not depend on pixel values.

Usage::

    python benchmarks/flowers_run.py [--epochs 10] [--backend numba] [--images 4326]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from fastcnn import CnnModel
from fastcnn.datasets.base import ArrayDataset
from fastcnn.zoo import get_preset

BOOK_SECONDS = 486.0
FLOWERS = ("daisy", "dandelion", "rose", "sunflower", "tulip")


def synthetic_flowers(images: int, seed: int = 0) -> ArrayDataset:
    """``images`` random 96x96x3 pictures with random flower labels, split 80/5/15 like the book."""
    rng = np.random.default_rng(seed)
    xs = rng.random((images, 96, 96, 3), dtype=np.float32)
    ys = np.eye(len(FLOWERS), dtype=np.float32)[rng.integers(0, len(FLOWERS), images)]
    return ArrayDataset("flowers-synthetic", xs, ys, "select", list(FLOWERS))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--images", type=int, default=4326)
    parser.add_argument("--backend", default="numba")
    args = parser.parse_args(argv)
    ds = synthetic_flowers(args.images)
    model = CnnModel("flower", ds, None, get_preset("flower"), backend=args.backend, seed=1)
    start = time.perf_counter()
    model.train(args.epochs, args.batch_size, 0.001, report=1, progress=False)
    secs = time.perf_counter() - start
    steps = args.epochs * (ds.train_count // args.batch_size)
    print(f"\n{args.backend}: {args.epochs} epochs x {ds.train_count // args.batch_size} steps "
          f"(batch {args.batch_size}, {ds.train_count} training images) in {secs:.1f} s, "
          f"{secs / steps * 1000:.1f} ms per step (incl. validation)")
    scaled = secs * 10 / args.epochs
    print(f"the book: 10 epochs in {BOOK_SECONDS:.0f} s; here, scaled to 10 epochs: {scaled:.1f} s "
          f"({BOOK_SECONDS / scaled:.1f}x faster)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
