"""A Gymnasium ``Text`` space that really holds free text, and vector-env support for it.

Gymnasium's ``Text`` defaults to letters and digits, so "Hi there!" is not in it, and
``AsyncVectorEnv``'s shared memory encodes strings through the charset and crashes on
anything else. ``FreeText`` accepts any Unicode string within its length bounds, samples
from a readable charset (letters, digits, punctuation, space and a few accented letters),
and registers its own shared-memory codec (Unicode code points in an int32 buffer), so
``gym.make_vec(..., vectorization_mode="async")`` works out of the box.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium.spaces import Text
from gymnasium.vector.utils import shared_memory as _shm

SAMPLE_CHARSET = string.ascii_letters + string.digits + string.punctuation + " " + "éèàüößçñ’—"


class FreeText(Text):
    """Any Unicode string of ``min_length`` to ``max_length`` characters.

    ``sample()`` draws from :data:`SAMPLE_CHARSET`; ``contains()`` accepts every character
    except NUL (the shared-memory padding value), so punctuation, emoji and non-Latin
    scripts are all valid observations and actions. With ``min_length > 0`` a string must
    also hold a non-space character (an all-blank utterance says nothing).
    """

    def __init__(self, max_length: int, *, min_length: int = 0, seed: Any = None) -> None:
        super().__init__(max_length, min_length=min_length, charset=SAMPLE_CHARSET, seed=seed)

    def sample(self, mask: Any = None, probability: Any = None) -> str:
        """A random string; with ``min_length > 0`` it always has a non-space character."""
        text = super().sample(mask=mask, probability=probability)
        if self.min_length > 0 and not text.strip():
            text = "a" + text[1:]
        return text

    def contains(self, x: Any) -> bool:
        if not isinstance(x, str) or not self.min_length <= len(x) <= self.max_length or "\x00" in x:
            return False
        return self.min_length == 0 or bool(x.strip())

    def __repr__(self) -> str:
        return f"FreeText({self.min_length}, {self.max_length})"

    def __eq__(self, other: Any) -> bool:
        return (
            isinstance(other, FreeText)
            and self.min_length == other.min_length
            and self.max_length == other.max_length
        )

    def __hash__(self) -> int:
        return hash(("FreeText", self.min_length, self.max_length))


@_shm.create_shared_memory.register(FreeText)
def _create(space: FreeText, n: int = 1, ctx: Any = None):
    import multiprocessing as mp

    return (ctx or mp).Array(np.dtype(np.int32).char, n * space.max_length)


class SharedTextView(Sequence):
    """A live, read-only view of ``n`` strings kept as code points in shared memory.

    ``AsyncVectorEnv`` reads its shared buffer once and relies on the result staying live (as
    numpy views do); Gymnasium's own ``Text`` reader returns a snapshot instead. A deep copy
    (what the vector env hands out with ``copy=True``) is a plain tuple of ``str``.
    """

    def __init__(self, codes: np.ndarray) -> None:
        self._codes = codes

    def __len__(self) -> int:
        return self._codes.shape[0]

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return tuple(self)[i]
        row = self._codes[i]
        return "".join(map(chr, row[row > 0].tolist()))

    def __deepcopy__(self, memo: dict) -> tuple[str, ...]:
        return tuple(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and tuple(self) == tuple(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"SharedTextView{tuple(self)!r}"


@_shm.read_from_shared_memory.register(FreeText)
def _read(space: FreeText, shared_memory: Any, n: int = 1) -> SharedTextView:
    data = np.frombuffer(shared_memory.get_obj(), dtype=np.int32).reshape((n, space.max_length))
    return SharedTextView(data)


@_shm.write_to_shared_memory.register(FreeText)
def _write(space: FreeText, index: int, values: str, shared_memory: Any) -> None:
    size = space.max_length
    codes = np.zeros(size, dtype=np.int32)
    points = [ord(c) for c in values[:size]]
    codes[: len(points)] = points
    destination = np.frombuffer(shared_memory.get_obj(), dtype=np.int32)
    np.copyto(destination[index * size : (index + 1) * size], codes)
