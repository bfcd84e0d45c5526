"""Fuzz the decoders of network input under hypothesis (issue 6; bench/fuzz.py runs more).

Decoders: frames (p2p/frames.py), every p2p message (p2p/messages.py), txs and their ops
(consensus/tx.py, muxernode/ops.py), blocks (consensus/block.py), votes
(consensus/vote.py) and the canonical codec (consensus/codec.py). The oracle is
bench/fuzz.py's ``Target.run``: only the decoder's documented error type may escape, and
whatever decodes must re-encode consistently; it raises ``Unexpected`` otherwise. Inputs:
plain random bytes, byte-level mutations of valid encodings, structure-level mutations
(one item of a valid object replaced, dropped or duplicated), hypothesis-built msgpack
objects, and allocation bombs under tracemalloc. About 9,000 inputs in all.
"""

from __future__ import annotations

import random
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.fuzz import (
    MEMORY_FACTOR,
    MEMORY_SLACK,
    TARGETS,
    Target,
    Unexpected,
    allocation_bombs,
    corpus,
    memory_pass,
    mutate,
    structured_input,
)
from consensus.codec import CodecError, decode

NAMES = [t.name for t in TARGETS]
TARGET = {t.name: t for t in TARGETS}
CORPUS = corpus()


def fuzz(examples: int) -> settings:
    # derandomized: the same inputs on every run, so a failure replays as it is
    return settings(max_examples=examples, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


def test_every_valid_seed_decodes() -> None:
    """The mutation seeds are valid, so the mutants start one edit away from 'ok'."""
    for name in NAMES:
        outcomes = {TARGET[name].run(seed) for seed in CORPUS[name]}
        if name == "frame":
            assert outcomes == {"frames"}
        elif name == "message":
            assert len(outcomes) == 17 and all(o.startswith("ok:") for o in outcomes)
        else:
            assert outcomes == {"ok"}, (name, outcomes)


def test_the_oracle_flags_broken_decoders() -> None:
    """The oracle can fail: another exception type, or an inconsistent result."""
    def raises(_data: bytes) -> str:
        raise KeyError("a bug")

    with pytest.raises(Unexpected, match="KeyError"):
        Target("broken", raises).run(b"\x00")

    def lenient(data: bytes) -> str:  # a codec that forgot the canonical check
        obj = msgpack.unpackb(data)
        if msgpack.packb(obj) != data:
            raise Unexpected("accepted non-canonical bytes")
        return "ok"

    with pytest.raises(Unexpected):
        Target("lenient", lenient).run(b"\xcc\x01")  # 1 as uint8: not minimal
    with pytest.raises(CodecError):
        decode(b"\xcc\x01")  # which the real codec refuses


@pytest.mark.parametrize("name", NAMES)
@fuzz(400)
@given(data=st.binary(max_size=300))
def test_random_bytes(name: str, data: bytes) -> None:
    TARGET[name].run(data)


@pytest.mark.parametrize("name", NAMES)
@fuzz(500)
@given(rng=st.randoms(use_true_random=False), pick=st.integers(min_value=0))
def test_mutated_valid_encodings(name: str, rng: random.Random, pick: int) -> None:
    seeds = CORPUS[name]
    TARGET[name].run(mutate(rng, seeds[pick % len(seeds)], seeds))


@pytest.mark.parametrize("name", NAMES)
@fuzz(300)
@given(rng=st.randoms(use_true_random=False))
def test_structure_mutations(name: str, rng: random.Random) -> None:
    TARGET[name].run(structured_input(rng, name, CORPUS[name]))


_leaf = (st.integers(min_value=-(2**63), max_value=2**64 - 1) | st.binary(max_size=70)
         | st.text(max_size=12) | st.booleans() | st.none() | st.floats()
         | st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=8)))
_obj = st.recursive(_leaf, lambda c: st.lists(c, max_size=9)
                    | st.dictionaries(st.text(max_size=3), c, max_size=2), max_leaves=40)


@pytest.mark.parametrize("name", NAMES)
@fuzz(150)
@given(obj=_obj, lead=st.integers(min_value=0, max_value=18))
def test_packed_objects(name: str, obj: Any, lead: int) -> None:
    """Any msgpack object; for p2p a message type first, so every parse() is reached."""
    if name in ("message", "frame"):
        obj = [lead, *(obj if isinstance(obj, list) else [obj])]
    body: bytes = msgpack.packb(obj, use_bin_type=True)
    if name == "frame":
        body = len(body).to_bytes(4, "big") + body
    TARGET[name].run(body)


@pytest.mark.parametrize("name", NAMES)
def test_allocation_bombs_stay_small(name: str) -> None:
    """Headers claiming 4 GiB, arrays of 2**32 items, deep nesting: no decoder allocates
    by what a header claims, only by the bytes that are there."""
    bombs = allocation_bombs()
    grew, _size, failures = memory_pass(TARGET[name], bombs)
    assert failures == []
    assert grew <= MEMORY_FACTOR * max(len(b) for b in bombs) + MEMORY_SLACK
    for bomb in bombs:  # and each is refused (or, for frames, waits for its body)
        assert not TARGET[name].run(bomb).startswith("ok")
