"""Named output buffers that a training step reuses instead of allocating anew.

A training step writes every batch-sized activation and activation gradient
(several MB each) once and drops it when the step ends. A ``Workspace`` keeps
those arrays between steps, keyed by name, so the next step of the same shape
writes into the same memory: no allocation, no page faults, no first-touch
cost. The model uses one only inside ``CnnModel.compute_step``, whose results
(loss, accuracy, parameter gradients) are never workspace arrays, so no array
a caller holds is overwritten by a later step.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

#: shapes kept per name: a smaller last batch, or two alternating batch sizes, do not thrash
SHAPES_PER_NAME = 2


class Workspace:
    """Reusable C-contiguous arrays by ``(name, shape, dtype)``.

    ``get`` hands back the same array for the same key on every call and
    allocates only on a miss; each name keeps its ``SHAPES_PER_NAME`` most
    recently used shapes (the least recently used one is dropped).
    ``allocations`` counts the misses, so a caller can check that a steady
    loop has stopped allocating.
    """

    def __init__(self, shapes_per_name: int = SHAPES_PER_NAME):
        if isinstance(shapes_per_name, bool) or not isinstance(shapes_per_name, int) or shapes_per_name < 1:
            raise ValueError(f"shapes_per_name must be an int >= 1, got {shapes_per_name!r}")
        self.shapes_per_name = shapes_per_name
        #: True while a step's parameter gradients may be workspace arrays too
        #: (set by ``CnnModel.compute_step(reuse_grads=True)``; the caller applies
        #: them before the next step)
        self.param_grads = False
        #: arrays allocated so far (misses of ``get``)
        self.allocations = 0
        self._slots: dict[str, OrderedDict] = {}

    def get(self, name: str, shape, dtype) -> np.ndarray:
        """The array for ``name`` with ``shape`` and ``dtype``; its contents are undefined.

        The caller must overwrite it completely and must not hand it out beyond
        the current step: the next ``get`` with the same key returns it again.
        """
        slots = self._slots.get(name)
        if slots is not None and type(shape) is tuple:  # hot path: ints hash like their normal form
            array = slots.get((shape, dtype))
            if array is not None:
                if len(slots) > 1:
                    slots.move_to_end((shape, dtype))
                return array
        shape = tuple(int(n) for n in shape)
        dtype = np.dtype(dtype)
        slots = self._slots.setdefault(name, OrderedDict())
        key = (shape, dtype)
        array = slots.get(key)
        if array is not None:
            slots.move_to_end(key)
            return array
        array = np.empty(shape, dtype)
        self.allocations += 1
        slots[key] = array
        while len(slots) > self.shapes_per_name:
            slots.popitem(last=False)  # least recently used
        return array

    def arrays(self) -> dict[tuple, np.ndarray]:
        """Every array held, keyed ``(name, shape, dtype)`` (a snapshot, for tests and reports)."""
        return {(name, shape, dtype): a
                for name, slots in self._slots.items() for (shape, dtype), a in slots.items()}

    @property
    def nbytes(self) -> int:
        """Bytes held by all arrays."""
        return sum(a.nbytes for slots in self._slots.values() for a in slots.values())

    def clear(self) -> None:
        """Drop every array (``allocations`` keeps counting)."""
        self._slots.clear()

    def __repr__(self) -> str:
        held = sum(len(s) for s in self._slots.values())
        return f"Workspace({held} arrays, {self.nbytes / 2**20:.1f} MiB, {self.allocations} allocations)"
