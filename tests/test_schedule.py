"""The witness schedule against the text of protocol section 5, slot math and epochs."""

from __future__ import annotations

import hashlib

import pytest

from consensus.schedule import Round, Schedule, round_order, slot_at, slot_time

CHAIN_ID = hashlib.sha256(b"test").digest()


def addresses(n: int, salt: bytes = b"w") -> list[bytes]:
    return [hashlib.sha256(salt + bytes([i])).digest()[:20] for i in range(n)]


def spec_order(chain_id: bytes, r: int, active: list[bytes]) -> list[bytes]:
    """Section 5, written out again independently of consensus.schedule."""
    items = sorted(active)
    seed = hashlib.sha256(b"MUXER/schedule/v1" + chain_id + r.to_bytes(8, "big")).digest()
    i = len(items) - 1
    while i >= 1:
        digest = hashlib.sha256(seed + i.to_bytes(4, "big")).digest()
        j = int.from_bytes(digest, "big") % (i + 1)
        items[i], items[j] = items[j], items[i]
        i -= 1
    return items


@pytest.mark.parametrize("n", [1, 4, 21])
def test_round_order_matches_protocol_text(n: int) -> None:
    active = addresses(n)
    shuffled = list(reversed(active))  # input order must not matter
    for r in range(10):
        expected = spec_order(CHAIN_ID, r, active)
        assert round_order(CHAIN_ID, r, active) == expected
        assert round_order(CHAIN_ID, r, shuffled) == expected
        assert sorted(expected) == sorted(active)


def test_round_order_pinned_values() -> None:
    # Pinned so that an accidental change to both implementations is caught too.
    active = addresses(4)
    got = [[active.index(a) for a in round_order(CHAIN_ID, r, active)] for r in range(4)]
    assert got == [[1, 3, 2, 0], [1, 3, 0, 2], [1, 0, 3, 2], [3, 0, 2, 1]]
    active = addresses(21)
    assert round_order(CHAIN_ID, 0, active)[0].hex() == "8b36dfbbb7822ae43065bf51f49dbd7eff520607"
    assert round_order(CHAIN_ID, 9, active)[20].hex() == "cf945b5236e101dbe0471d5200f28b1ae64f21c1"


def test_round_order_varies_with_chain_and_round() -> None:
    active = addresses(21)
    orders = {tuple(round_order(CHAIN_ID, r, active)) for r in range(10)}
    assert len(orders) == 10
    other = hashlib.sha256(b"other").digest()
    assert round_order(other, 0, active) != round_order(CHAIN_ID, 0, active)


def test_round_order_returns_a_fresh_list() -> None:
    active = addresses(4)
    first = round_order(CHAIN_ID, 3, active)
    first.clear()
    assert len(round_order(CHAIN_ID, 3, active)) == 4


def test_round_order_rejects_empty_set() -> None:
    with pytest.raises(ValueError):
        round_order(CHAIN_ID, 0, [])


def test_slot_math() -> None:
    g = 1_767_225_600
    assert slot_time(g, 3, 0) == g
    assert slot_time(g, 3, 5) == g + 15
    assert slot_at(g, 3, g) == 0
    assert slot_at(g, 3, g + 14) == 4
    assert slot_at(g, 3, g + 15) == 5
    assert slot_at(g, 3, g + 17) == 5
    assert slot_at(g, 1, g - 1) == -1
    for s in range(50):
        assert slot_at(g, 3, slot_time(g, 3, s)) == s
        assert slot_time(g, 3, slot_at(g, 3, g + s)) <= g + s
    with pytest.raises(ValueError):
        slot_at(g, 0, g)


@pytest.mark.parametrize("n", [4, 21])
def test_schedule_single_epoch_matches_protocol_text(n: int) -> None:
    active = addresses(n)
    sched = Schedule(CHAIN_ID, [(1, active)])
    for slot in range(1, 10 * n + 1):
        r, pos = divmod(slot - 1, n)
        assert sched.witness_at(slot) == spec_order(CHAIN_ID, r, active)[pos]
        rnd = sched.round_of(slot)
        assert rnd == Round(r, 1 + r * n, tuple(sorted(active)))
        assert rnd.end == r * n + n
        assert sched.voters_at(slot) == tuple(sorted(active))
    assert sched.round_start(0) == 1
    assert sched.round_start(3) == 1 + 3 * n
    with pytest.raises(ValueError):
        sched.witness_at(0)


def test_schedule_set_change_at_round_boundary() -> None:
    four = addresses(4)
    seven = addresses(7, b"x")
    sched = Schedule(CHAIN_ID, [(1, four)])
    # maintenance block final at slot 10 -> the first round starting after it
    assert sched.next_round_start(10) == 13
    assert sched.next_round_start(12) == 13
    assert sched.next_round_start(13) == 17
    assert sched.next_round_start(0) == 1
    sched.add_epoch(13, seven, decided_at=10)
    # rounds 0..2 (slots 1..12) use four witnesses, round 3 on uses seven
    assert sched.round_of(12) == Round(2, 9, tuple(sorted(four)))
    assert sched.round_of(13) == Round(3, 13, tuple(sorted(seven)))
    assert sched.round_of(19) == Round(3, 13, tuple(sorted(seven)))
    assert sched.round_of(20) == Round(4, 20, tuple(sorted(seven)))
    assert sched.round_start(3) == 13
    assert sched.round_start(5) == 27
    assert sched.round_start(1) == 5
    for slot in range(1, 13):
        r, pos = divmod(slot - 1, 4)
        assert sched.witness_at(slot) == spec_order(CHAIN_ID, r, four)[pos]
    for slot in range(13, 13 + 7 * 5):
        k, pos = divmod(slot - 13, 7)
        assert sched.witness_at(slot) == spec_order(CHAIN_ID, 3 + k, seven)[pos]
    # the new round numbering continues: round 4 of the seven uses round 4's seed
    assert sched.next_round_start(13) == 20


def test_schedule_shrinking_set_and_chained_epochs() -> None:
    seven = addresses(7)
    three = addresses(3, b"y")
    sched = Schedule(CHAIN_ID, [(1, seven), (15, three, 9)])  # round 2 starts at 15
    assert sched.round_of(15) == Round(2, 15, tuple(sorted(three)))
    assert sched.round_of(18) == Round(3, 18, tuple(sorted(three)))
    sched.add_epoch(21, seven, decided_at=19)
    assert sched.round_of(21) == Round(4, 21, tuple(sorted(seven)))
    assert [e.first_round for e in sched.epochs] == [0, 2, 4]


def test_schedule_rejects_bad_epochs() -> None:
    four = addresses(4)
    sched = Schedule(CHAIN_ID, [(1, four)])
    with pytest.raises(ValueError):
        sched.add_epoch(7, four)  # not a round start
    with pytest.raises(ValueError):
        sched.add_epoch(1, four)  # cannot replace genesis
    with pytest.raises(ValueError):
        sched.add_epoch(9, [four[0], four[0]])  # duplicates
    with pytest.raises(ValueError):
        sched.add_epoch(9, [])
    with pytest.raises(ValueError):
        sched.add_epoch(9, four, decided_at=9)
    with pytest.raises(ValueError):
        Schedule(CHAIN_ID, [(2, four)])
    with pytest.raises(ValueError):
        Schedule(CHAIN_ID, [])
    sched.add_epoch(9, addresses(2, b"z"))
    with pytest.raises(ValueError):
        sched.add_epoch(5, four)  # before the last epoch


def test_schedule_replace_and_rollback() -> None:
    four = addresses(4)
    five = addresses(5, b"f")
    six = addresses(6, b"s")
    sched = Schedule(CHAIN_ID, [(1, four)])
    sched.add_epoch(9, five, decided_at=6)
    sched.add_epoch(9, six, decided_at=7)  # a later election before the round began
    assert len(sched.epochs) == 2
    assert sched.voters_at(9) == tuple(sorted(six))
    sched.add_epoch(21, four, decided_at=18)  # 9 + 2 * 6
    branch = sched.copy()
    sched.rollback(10)
    assert [e.first_slot for e in sched.epochs] == [1, 9]
    assert sched.voters_at(25) == tuple(sorted(six))
    assert branch.voters_at(25) == tuple(sorted(four))  # the copy is independent
    sched.rollback(0)
    assert [e.first_slot for e in sched.epochs] == [1]
    assert sched.voters_at(25) == tuple(sorted(four))


def test_every_slot_has_exactly_one_round() -> None:
    sched = Schedule(CHAIN_ID, [(1, addresses(4))])
    sched.add_epoch(13, addresses(7, b"x"), decided_at=10)
    sched.add_epoch(27, addresses(2, b"q"), decided_at=20)
    prev: Round | None = None
    for slot in range(1, 60):
        rnd = sched.round_of(slot)
        assert rnd.start <= slot <= rnd.end
        if prev is not None and rnd != prev:
            assert rnd.number == prev.number + 1
            assert rnd.start == prev.end + 1
        prev = rnd
