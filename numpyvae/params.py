"""All weights in one flat buffer, with named, writable views.

One buffer means the optimiser updates every parameter in one pass over contiguous memory, a
checkpoint is one array, and the gradients live in a second buffer of the same layout. The
named views ("enc.h1.W", ...) are what a reader and the tests see.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


class Parameters:
    """A flat buffer and an ordered set of named views into it.

    >>> p = Parameters({"W": (2, 3), "b": (3,)}, dtype="float64")
    >>> p["W"][:] = 1.0; float(p.flat.sum())
    6.0
    """

    def __init__(self, shapes: dict[str, tuple[int, ...]], dtype="float32", flat=None):
        self.shapes = {name: tuple(int(s) for s in shape) for name, shape in shapes.items()}
        self.dtype = np.dtype(dtype)
        sizes = [int(np.prod(shape)) for shape in self.shapes.values()]
        total = int(sum(sizes))
        if flat is None:
            flat = np.zeros(total, dtype=self.dtype)
        elif flat.shape != (total,) or flat.dtype != self.dtype:
            raise ValueError(
                f"flat buffer has shape {flat.shape} and dtype {flat.dtype}; this layout "
                f"needs shape ({total},) and dtype {self.dtype}"
            )
        self.flat = flat
        self.views: dict[str, np.ndarray] = {}
        offset = 0
        for (name, shape), size in zip(self.shapes.items(), sizes, strict=True):
            self.views[name] = flat[offset : offset + size].reshape(shape)
            offset += size

    def __getstate__(self) -> dict:
        """Pickle and copy.deepcopy keep only the buffer; ``__setstate__`` rebuilds the views.
        (Copied one by one, the views would no longer alias the copied buffer: an optimiser
        would update one array while the forward pass read another.)"""
        return {"shapes": self.shapes, "dtype": self.dtype.str, "flat": self.flat}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["shapes"], state["dtype"], flat=state["flat"])

    def __getitem__(self, name: str) -> np.ndarray:
        return self.views[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.views)

    def __len__(self) -> int:
        return len(self.views)

    def items(self):
        return self.views.items()

    @property
    def size(self) -> int:
        """Number of scalars in the buffer."""
        return self.flat.size

    def zeros_like(self) -> Parameters:
        """A new buffer of the same layout, all zeros (gradients, optimiser moments)."""
        return Parameters(self.shapes, self.dtype)

    def copy(self) -> Parameters:
        return Parameters(self.shapes, self.dtype, flat=self.flat.copy())
