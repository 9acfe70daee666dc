"""``IntDraws``: numpy's ``Generator.integers(n)`` without its call overhead, same numbers.

Template choice draws one bounded integer per reply. ``rng.integers(n)`` spends most of its time
parsing arguments (about 2 us a call, up to a tenth of a scripted step). Numpy draws it with
Lemire's method on the bit generator's ``next_uint32``; :class:`IntDraws` calls that same C
function through the bit generator's documented ``ctypes`` interface and does the same
arithmetic, so it returns the same integer and leaves the generator in the same state: seeded
episodes do not change. At import the fast path is checked against ``Generator.integers`` on a
mixed stream; if numpy ever draws differently, every ``IntDraws`` falls back to
``rng.integers``. Like any use of one generator, not for sharing between threads.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

_U32 = 0xFFFFFFFF
_UNRESOLVED: Any = object()  # IntDraws' next_uint32 before its first draw


def _uint32_source(rng: np.random.Generator) -> Callable[[], int] | None:
    """The bit generator's own ``next_uint32`` as a Python callable, or None if not exposed."""
    try:
        iface = rng.bit_generator.ctypes
        return functools.partial(iface.next_uint32, iface.state_address)
    except Exception:  # a bit generator without the ctypes interface
        return None


class IntDraws:
    """``draws(n)`` returns ``int(rng.integers(n))`` for ``rng``: the same number, drawn from the
    same stream, about twice as fast. Pickles and deep-copies with its generator.

    The bit generator's ``next_uint32`` is looked up on the first draw, not on construction:
    the lookup costs a few microseconds, and a scripted human gets a new drawer every episode
    whether its task draws with it or not."""

    __slots__ = ("_next32", "rng")

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self._next32: Callable[[], int] | None = _UNRESOLVED if _FAST else None

    def __reduce__(self) -> tuple[Any, ...]:
        return (IntDraws, (self.rng,))

    def __call__(self, n: int) -> int:
        next32 = self._next32
        if next32 is _UNRESOLVED:
            next32 = self._next32 = _uint32_source(self.rng)
        # numpy draws nothing for n = 1 and raises for n < 1: leave those (and non-ints) to it
        if next32 is None or type(n) is not int or not 1 < n <= _U32:
            return int(self.rng.integers(n))
        # numpy's buffered_bounded_lemire_uint32 with rng = n - 1
        m = next32() * n
        leftover = m & _U32
        if leftover < n:
            threshold = (_U32 - (n - 1)) % n
            while leftover < threshold:
                m = next32() * n
                leftover = m & _U32
        return m >> 32


def _agrees_with_numpy() -> bool:
    """The fast path gives numpy's numbers on a stream that mixes its draws with other calls."""
    sizes = [2, 3, 7, 10, 1, 1000, 2**31 + 1, 5, 2**32 - 1, 6]
    ours, theirs = np.random.default_rng(12345), np.random.default_rng(12345)
    draws = IntDraws(ours)
    for i in range(200):
        n = sizes[i % len(sizes)]
        if draws(n) != int(theirs.integers(n)):
            return False
        if i % 3 == 0 and ours.random() != theirs.random():
            return False
    return ours.random() == theirs.random()


_FAST = True  # on while the check below runs IntDraws' fast path against numpy
_FAST = _uint32_source(np.random.default_rng(0)) is not None and _agrees_with_numpy()
