"""``IntDraws``: numpy's ``Generator.integers(n)`` without its call overhead, same numbers.

Template choice draws one bounded integer per reply. ``rng.integers(n)`` spends most of its time
parsing arguments (about 2 us a call, up to a tenth of a scripted step). Numpy draws it with
Lemire's method on the bit generator's ``next_uint32``; :class:`IntDraws` calls that same C
function through the bit generator's documented ``ctypes`` interface and does the same
arithmetic, so it returns the same integer and leaves the generator in the same state: seeded
episodes do not change. At import the fast path is checked against ``Generator.integers`` on a
mixed stream; if numpy ever draws differently, every ``IntDraws`` falls back to
``rng.integers``. Like any use of one generator, not for sharing between threads.

Finding ``next_uint32`` through ``bit_generator.ctypes`` builds that interface anew for every
generator (about 5 us, and every seeded reset makes a new generator). The same two pointers are
read from the generator's ``capsule`` (numpy's ``bitgen_t`` struct, ``numpy/random/bitgen.h``)
in about 1 us, once the capsule's reading has been checked at import to give the ``ctypes``
interface's pointers; otherwise the ``ctypes`` interface is used.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable
from typing import Any

import numpy as np

_U32 = 0xFFFFFFFF
_UNRESOLVED: Any = object()  # IntDraws' next_uint32 before its first draw


class _BitGen(ctypes.Structure):
    """numpy's ``bitgen_t``: the state and the draw functions of a bit generator."""

    _fields_ = [
        ("state", ctypes.c_void_p),
        ("next_uint64", ctypes.c_void_p),
        ("next_uint32", ctypes.c_void_p),
        ("next_double", ctypes.c_void_p),
        ("next_raw", ctypes.c_void_p),
    ]


_NEXT_UINT32 = ctypes.CFUNCTYPE(ctypes.c_uint32, ctypes.c_void_p)
_next_uint32_at: dict[int, Any] = {}  # callable per C function address: one per bit generator type


try:  # a prototype of our own: setting restype on ctypes.pythonapi's would change it for everyone
    _capsule_pointer = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.py_object, ctypes.c_char_p)(
        ("PyCapsule_GetPointer", ctypes.pythonapi)
    )
except (AttributeError, OSError):  # not CPython
    _capsule_pointer = None


def _capsule_bitgen(rng: np.random.Generator) -> _BitGen:
    """The ``bitgen_t`` that the bit generator's capsule points to (valid while ``rng`` lives)."""
    return _BitGen.from_address(_capsule_pointer(rng.bit_generator.capsule, b"BitGenerator"))


def _ctypes_source(rng: np.random.Generator) -> Callable[[], int] | None:
    """``next_uint32`` through numpy's documented ``ctypes`` interface, or None if not exposed."""
    try:
        iface = rng.bit_generator.ctypes
        return functools.partial(iface.next_uint32, iface.state_address)
    except Exception:  # a bit generator without the ctypes interface
        return None


def _capsule_source(rng: np.random.Generator) -> Callable[[], int] | None:
    """``next_uint32`` read from the capsule's ``bitgen_t`` (see the module docstring)."""
    try:
        bitgen = _capsule_bitgen(rng)
    except Exception:
        return _ctypes_source(rng)
    address = bitgen.next_uint32
    fn = _next_uint32_at.get(address)
    if fn is None:
        fn = _next_uint32_at[address] = _NEXT_UINT32(address)
    return functools.partial(fn, bitgen.state)


def _capsule_reads_as_ctypes(rng: np.random.Generator | None = None) -> bool:
    """The capsule's ``bitgen_t`` of ``rng`` (default: a new PCG64 generator) holds the state
    address and ``next_uint32`` of its ``ctypes`` interface (checked before any function is called
    through it)."""
    try:
        rng = rng if rng is not None else np.random.default_rng(0)
        bitgen, iface = _capsule_bitgen(rng), rng.bit_generator.ctypes
        fn = ctypes.cast(iface.next_uint32, ctypes.c_void_p).value
        return bitgen.state == iface.state_address and bitgen.next_uint32 == fn
    except Exception:
        return False


_find_source: Callable[[np.random.Generator], Callable[[], int] | None] = (
    _capsule_source if _capsule_reads_as_ctypes() else _ctypes_source
)
# The last generator looked up and its next_uint32: a seeded reset draws the persona and then the
# human's replies from one new generator, each through its own IntDraws, and looks it up once.
_last: tuple[np.random.Generator | None, Callable[[], int] | None] = (None, None)


def _uint32_source(rng: np.random.Generator) -> Callable[[], int] | None:
    """``next_uint32`` of ``rng``'s bit generator, bound to its state (None if not exposed)."""
    global _last
    last = _last  # one read: another thread may replace it
    if last[0] is rng:
        return last[1]
    source = _find_source(rng)
    _last = (rng, source)
    return source


class IntDraws:
    """``draws(n)`` returns ``int(rng.integers(n))`` for ``rng``: the same number, drawn from the
    same stream, about twice as fast. Pickles and deep-copies with its generator.

    The bit generator's ``next_uint32`` is looked up on the first draw, not on construction:
    the lookup costs about 1 us (about 5 us through the ctypes fallback), and a scripted human gets
    a new drawer every episode whether its task draws with it or not."""

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
