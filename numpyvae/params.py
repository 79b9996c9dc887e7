"""All weights in one flat buffer, with named, writable views.

One buffer means the optimiser updates every parameter in one pass over contiguous memory, a
checkpoint is one array, and the gradients live in a second buffer of the same layout. The
named views ("enc.h1.W", ...) are what a reader and the tests see.

Arrays that one matrix product should compute together can sit *side by side*: the two latent
heads' weights (500, 20) and (500, 20) are the two halves of one (500, 40) block, so
h @ [W_mu | W_logvar] is one product (``numpyvae.fast``). Their views are then strided. Files
never see this: ``to_canonical`` gives the buffer in the order of the names, each array in C
order, which is what checkpoints hold (and held before blocks existed), and ``from_canonical``
reads it back.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


def _place(shapes: dict[str, tuple[int, ...]], flat: np.ndarray, groups) -> tuple[dict, dict]:
    """Views of ``flat`` for every name, in the order of ``shapes``; a group's arrays side by
    side in one block, at the place of its first name. Returns (views, blocks by name)."""
    group_of = {name: group for group in groups for name in group}
    views: dict[str, np.ndarray] = {}
    blocks: dict[str, np.ndarray] = {}
    offset = 0
    for name, shape in shapes.items():
        if name in views:
            continue
        group = group_of.get(name, (name,))
        lead = shape[:-1]
        if any(shapes[m][:-1] != lead for m in group):
            raise ValueError(f"{group} cannot sit side by side: shapes "
                             f"{[shapes[m] for m in group]} differ before the last axis")
        width = sum(shapes[m][-1] for m in group)
        size = int(np.prod(lead, dtype=np.int64)) * width
        block = flat[offset: offset + size].reshape(*lead, width)
        offset += size
        column = 0
        for member in group:
            w = shapes[member][-1]
            views[member] = block[..., column: column + w] if len(group) > 1 else block
            if len(group) > 1:
                blocks[member] = block
            column += w
    return {name: views[name] for name in shapes}, blocks


class Parameters:
    """A flat buffer and an ordered set of named views into it.

    >>> p = Parameters({"W": (2, 3), "b": (3,)}, dtype="float64")
    >>> p["W"][:] = 1.0; float(p.flat.sum())
    6.0

    ``side_by_side``: groups of names whose arrays share all but their last axis and are stored
    as one block, e.g. (("enc.mu.W", "enc.logvar.W"),); ``blocks[name]`` is then the block.
    """

    def __init__(self, shapes: dict[str, tuple[int, ...]], dtype="float32", flat=None,
                 side_by_side=()):
        self.shapes = {name: tuple(int(s) for s in shape) for name, shape in shapes.items()}
        self.dtype = np.dtype(dtype)
        self.side_by_side = tuple(tuple(group) for group in side_by_side)
        unknown = {m for group in self.side_by_side for m in group} - set(self.shapes)
        if unknown:
            raise ValueError(f"side_by_side names {sorted(unknown)}, which have no shape")
        total = int(sum(int(np.prod(shape)) for shape in self.shapes.values()))
        if flat is None:
            flat = np.zeros(total, dtype=self.dtype)
        elif flat.shape != (total,) or flat.dtype != self.dtype:
            raise ValueError(
                f"flat buffer has shape {flat.shape} and dtype {flat.dtype}; this layout "
                f"needs shape ({total},) and dtype {self.dtype}"
            )
        self.flat = flat
        self.views, self.blocks = _place(self.shapes, flat, self.side_by_side)
        # canonical position -> position in flat (None: the same order)
        self._canonical = None
        if self.side_by_side:
            where, _ = _place(self.shapes, np.arange(total), self.side_by_side)
            self._canonical = np.concatenate([where[name].ravel() for name in self.shapes])

    def __getstate__(self) -> dict:
        """Pickle and copy.deepcopy keep only the buffer; ``__setstate__`` rebuilds the views.
        (Copied one by one, the views would no longer alias the copied buffer: an optimiser
        would update one array while the forward pass read another.)"""
        return {"shapes": self.shapes, "dtype": self.dtype.str, "flat": self.flat,
                "side_by_side": self.side_by_side}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["shapes"], state["dtype"], flat=state["flat"],
                      side_by_side=state.get("side_by_side", ()))

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

    def to_canonical(self, a: np.ndarray) -> np.ndarray:
        """A buffer of this layout (``flat``, a gradient, an optimiser moment) in canonical
        order: every named array in C order, one after the other, in the order of the names.
        What checkpoint files hold."""
        return a if self._canonical is None else a[self._canonical]

    def from_canonical(self, canonical: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """The inverse of ``to_canonical``, written into ``out`` (default: ``flat``)."""
        out = self.flat if out is None else out
        if self._canonical is None:
            out[...] = canonical
        else:
            out[self._canonical] = canonical
        return out

    def zeros_like(self) -> Parameters:
        """A new buffer of the same layout, all zeros (gradients, optimiser moments)."""
        return Parameters(self.shapes, self.dtype, side_by_side=self.side_by_side)

    def copy(self) -> Parameters:
        return Parameters(self.shapes, self.dtype, flat=self.flat.copy(),
                          side_by_side=self.side_by_side)
