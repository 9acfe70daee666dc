"""IntDraws: numpy's integers(n) numbers from the same stream, and copies that keep their own."""

import copy
import pickle

import gymnasium as gym
import numpy as np
import pytest

import dialogue_gym  # noqa: F401
from dialogue_gym.core import rng as rng_module
from dialogue_gym.core.rng import IntDraws

BIT_GENERATORS = ["PCG64", "PCG64DXSM", "Philox", "SFC64", "MT19937"]


def test_the_fast_path_is_on_here():
    assert rng_module._FAST, "numpy's bounded draws changed: IntDraws fell back to rng.integers"


def test_next_uint32_is_read_from_the_capsule_here():
    """The quick lookup (the capsule's bitgen_t) is on, and gives ctypes' state address and
    next_uint32 for each generator, of every bit generator type."""
    assert rng_module._find_source is rng_module._capsule_source
    for name in BIT_GENERATORS:
        for seed in range(3):
            rng = np.random.Generator(getattr(np.random, name)(seed))
            assert rng_module._capsule_reads_as_ctypes(rng), (name, seed)


@pytest.mark.parametrize("bit_generator", BIT_GENERATORS)
def test_same_numbers_for_every_bit_generator(bit_generator):
    make = getattr(np.random, bit_generator)
    ours, theirs = np.random.Generator(make(11)), np.random.Generator(make(11))
    draws = IntDraws(ours)
    for i in range(2_000):
        n = 2 + i % 50 if i % 9 else 2**32 - 1 - i
        assert draws(n) == int(theirs.integers(n)), (i, n)
    assert repr(ours.bit_generator.state) == repr(theirs.bit_generator.state)  # states hold arrays


def test_same_numbers_and_state_as_numpy_on_a_mixed_stream():
    ours, theirs = np.random.default_rng(7), np.random.default_rng(7)
    draws = IntDraws(ours)
    sizes = np.random.default_rng(1)
    for i in range(20_000):
        # mostly small n (template choice), sometimes near 2**32 where Lemire rejects draws
        n = int(sizes.integers(1, 60)) if i % 5 else int(sizes.integers(2**31, 2**32 + 2))
        assert draws(n) == int(theirs.integers(n)), (i, n)
        if i % 3 == 0:  # other draws in between share the generator's state (and its 32-bit buffer)
            assert ours.random() == theirs.random()
        if i % 7 == 0:
            assert ours.integers(3, 9) == theirs.integers(3, 9)
    assert ours.bit_generator.state == theirs.bit_generator.state


@pytest.mark.parametrize("bad", [0, -3])
def test_bad_bounds_raise_as_numpy_does(bad):
    with pytest.raises(ValueError):
        IntDraws(np.random.default_rng(0))(bad)


def test_pickled_and_copied_draws_follow_their_own_generator():
    rng = np.random.default_rng(3)
    draws = IntDraws(rng)
    twin = pickle.loads(pickle.dumps(draws))
    assert twin.rng is not rng
    assert [twin(9) for _ in range(50)] == [draws(9) for _ in range(50)]
    deep = copy.deepcopy(draws)
    first = [deep(9) for _ in range(20)]
    assert first == [draws(9) for _ in range(20)]  # deep copy did not advance the original


DEEP_COPY_LINES = {  # lines whose replies choose among several template variants
    "DialogueTeach-v0": [
        "Hi! What do you already know about this topic?",
        "Think of it like a front door that needs both a key and a fingerprint. Does that make sense?",
    ],
    "DialogueCounsel-v0": [
        "Hi! How are you feeling today?",
        "That sounds really hard. Tell me more about it.",
    ],
}


@pytest.mark.parametrize("env_id", list(DEEP_COPY_LINES))
def test_a_deep_copied_env_does_not_draw_from_the_original(env_id):
    lines = DEEP_COPY_LINES[env_id]
    env = gym.make(env_id)
    env.reset(seed=5)
    env.step(lines[0])
    twin = copy.deepcopy(env)
    for _ in range(3):  # the copy's replies draw templates; the original's stream must not move
        if twin.step(lines[1])[2:4] != (False, False):
            break
    replay = gym.make(env_id)
    replay.reset(seed=5)
    replay.step(lines[0])
    assert env.step(lines[1]) == replay.step(lines[1])


def test_drawers_of_one_generator_share_its_lookup_and_stream():
    """A persona sampler and the human each draw through their own IntDraws of the episode's
    generator: the second finds next_uint32 without looking it up again, and their draws,
    interleaved, are numpy's."""
    ours, theirs = np.random.default_rng(3), np.random.default_rng(3)
    first, second = IntDraws(ours), IntDraws(ours)
    assert first(5) == int(theirs.integers(5))
    assert second._next32 is rng_module._UNRESOLVED
    assert second(5) == int(theirs.integers(5))
    assert second._next32 is first._next32
    for i in range(500):
        n = 2 + i % 13
        assert (first if i % 2 else second)(n) == int(theirs.integers(n)), i
    assert ours.bit_generator.state == theirs.bit_generator.state
    other = IntDraws(np.random.default_rng(3))
    other(5)
    assert other._next32 is not first._next32  # a new generator gets its own state pointer


def test_offset_draws_equal_numpy_two_bound_integers():
    """``lo + draws(hi + 1 - lo)`` is ``rng.integers(lo, hi + 1)``: the samplers draw ranges so."""
    ours, theirs = np.random.default_rng(9), np.random.default_rng(9)
    draws = IntDraws(ours)
    for i in range(5_000):
        lo, hi = i % 7, i % 7 + i % 11
        assert lo + draws(hi + 1 - lo) == int(theirs.integers(lo, hi + 1)), (i, lo, hi)
    assert ours.bit_generator.state == theirs.bit_generator.state
