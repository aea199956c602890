"""``CnnRegModel``: the book's chapter 8 constructor over ``CnnModel``.

The book's signature, ``CnnRegModel(name, dataset, hconfigs, show_maps=False, l2_decay=0,
l1_decay=0)``, has no ``mode`` (the dataset's is used); everything else is ``CnnModel``'s,
which takes the same ``l2_decay`` / ``l1_decay`` as keywords (``fastcnn.regularize``).
"""

from __future__ import annotations

from .model import CnnModel


class CnnRegModel(CnnModel):
    """``CnnModel`` with the book's chapter 8 positional order; ``mode``, ``use_adam`` and
    ``CnnModel``'s other keywords (backend, seed, dtype, ...) are keyword-only here."""

    def __init__(self, name, dataset, hconfigs=None, show_maps=False, l2_decay=0, l1_decay=0, *,
                 mode=None, use_adam=True, **options):
        super().__init__(name, dataset, mode, hconfigs, show_maps, use_adam,
                         l2_decay=l2_decay, l1_decay=l1_decay, **options)
