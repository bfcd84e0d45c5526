"""The DPoS witness schedule: slots, rounds and the order of each round (protocol section 5).

Rules:

- Slot a is at time ``genesis_time + a * block_interval_s``. Slot 0 is genesis; blocks use
  slots >= 1. ``slot_at(t)`` is the last slot whose time is <= t (floor division, so a
  time before genesis gives a negative slot).
- Round 0 starts at slot 1. A round with n active witnesses covers n slots; the next round
  starts right after it.
- Order of round r: sort the active addresses ascending, seed =
  H(b"MUXER/schedule/v1" + chain_id + r.to_bytes(8, "big")); for i from n-1 down to 1:
  j = int.from_bytes(H(seed + i.to_bytes(4, "big")), "big") % (i + 1); swap items i, j.
  The witness of a slot is the item at the slot's position in its round.
- An elected set takes effect at the first round that starts after its maintenance block
  is final (section 5), so the active set, and with it the round length, can change only
  at a round boundary.

Design of ``Schedule`` (implementation-defined, recorded here and in docs/):

- A schedule is a list of *epochs*. An epoch is ``(first_slot, first_round, active,
  decided_at)``: from ``first_slot`` on, rounds have ``len(active)`` slots and are numbered
  ``first_round, first_round + 1, ...``; it lasts until the next epoch's first slot. The
  first epoch starts at slot 1 with round 0 (the genesis witnesses). Round numbers run on
  across epochs, so round r has the same seed whatever set it uses.
- ``add_epoch(first_slot, active)`` appends an epoch. ``first_slot`` MUST be a round start
  of the schedule as it stands (``next_round_start(f)`` gives the first round start after
  slot f, which is what the node passes when the maintenance block becomes final at
  slot f). An epoch with the same first slot as the last one replaces it (a later
  election decided before the round began supersedes the earlier one). The caller MUST
  only add epochs starting after every slot it has already used the schedule for;
  the schedule cannot check this because it reads no clock.
- ``decided_at`` is the slot of the block whose votes made the maintenance block final on
  this branch. ``rollback(slot)`` drops the epochs decided above ``slot``: a node that
  switches to another fork rolls back to the common ancestor's slot and then re-adds what
  the new branch decides. ``copy()`` gives an independent schedule for a branch.
- Queries (``round_of``, ``witness_at``, ``voters_at``) are pure functions of the epoch
  list: every node with the same epochs gets the same answers for every slot >= 1.

``round_order`` keeps an LRU cache of recent rounds because the node asks for it on every
slot; it returns a fresh list each call so callers may modify it.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

from consensus.crypto import TAG_SCHEDULE, sha256

__all__ = [
    "Epoch",
    "Round",
    "Schedule",
    "round_order",
    "slot_at",
    "slot_time",
]


def slot_time(genesis_time: int, interval: int, slot: int) -> int:
    """The time of a slot: ``genesis_time + slot * interval``."""
    return genesis_time + slot * interval


def slot_at(genesis_time: int, interval: int, t: int) -> int:
    """The last slot whose time is <= t."""
    if interval <= 0:
        raise ValueError("block interval must be positive")
    return (t - genesis_time) // interval


@lru_cache(maxsize=512)
def _order(chain_id: bytes, r: int, ordered: tuple[bytes, ...]) -> tuple[bytes, ...]:
    items = list(ordered)
    seed = sha256(TAG_SCHEDULE + chain_id + r.to_bytes(8, "big"))
    for i in range(len(items) - 1, 0, -1):
        j = int.from_bytes(sha256(seed + i.to_bytes(4, "big")), "big") % (i + 1)
        items[i], items[j] = items[j], items[i]
    return tuple(items)


def round_order(chain_id: bytes, r: int, active: Sequence[bytes]) -> list[bytes]:
    """The witnesses of round r in slot order (the shuffle of section 5)."""
    if not active:
        raise ValueError("the active witness set is empty")
    if not 0 <= r < 2**64:
        raise ValueError(f"round number {r} out of range")
    return list(_order(bytes(chain_id), r, tuple(sorted(active))))


class Round(NamedTuple):
    """A round: its number, its first slot and its active set (sorted ascending)."""

    number: int
    start: int
    active: tuple[bytes, ...]

    @property
    def end(self) -> int:
        """The round's last slot."""
        return self.start + len(self.active) - 1


@dataclass(frozen=True, slots=True)
class Epoch:
    """Rounds of ``len(active)`` slots from ``first_slot`` (round ``first_round``) on."""

    first_slot: int
    first_round: int
    active: tuple[bytes, ...]  # sorted ascending, distinct
    decided_at: int  # slot of the block that made the change final on this branch; 0 = genesis


def _normalize(active: Sequence[bytes]) -> tuple[bytes, ...]:
    ordered = tuple(sorted(bytes(a) for a in active))
    if not ordered:
        raise ValueError("the active witness set is empty")
    if len(set(ordered)) != len(ordered):
        raise ValueError("the active witness set has duplicates")
    return ordered


class Schedule:
    """Which round contains a slot, who is active in it and who produces it."""

    __slots__ = ("_epochs", "_starts", "chain_id")

    def __init__(
        self,
        chain_id: bytes,
        epochs: Iterable[tuple[int, Sequence[bytes]] | tuple[int, Sequence[bytes], int]],
    ) -> None:
        """Build from ``(first_slot, active[, decided_at])`` items in order.

        The first item must start at slot 1 (the genesis set); each later one must start
        at a round boundary of the schedule built so far.
        """
        self.chain_id = bytes(chain_id)
        self._epochs: list[Epoch] = []
        self._starts: list[int] = []
        for item in epochs:
            decided_at = item[2] if len(item) == 3 else 0
            if not self._epochs:
                if item[0] != 1:
                    raise ValueError("the first epoch starts at slot 1 (round 0)")
                self._epochs.append(Epoch(1, 0, _normalize(item[1]), decided_at))
                self._starts.append(1)
            else:
                self.add_epoch(item[0], item[1], decided_at=decided_at)
        if not self._epochs:
            raise ValueError("a schedule needs at least the genesis epoch")

    @property
    def epochs(self) -> tuple[Epoch, ...]:
        """The epochs, oldest first (persist these to restore the schedule)."""
        return tuple(self._epochs)

    def copy(self) -> Schedule:
        """An independent copy (for another branch)."""
        return Schedule(
            self.chain_id, [(e.first_slot, e.active, e.decided_at) for e in self._epochs]
        )

    def _epoch_of(self, slot: int) -> Epoch:
        if slot < 1:
            raise ValueError(f"slot {slot} has no witness (blocks use slots >= 1)")
        return self._epochs[bisect_right(self._starts, slot) - 1]

    def round_of(self, slot: int) -> Round:
        """The round containing ``slot`` (>= 1): ``(number, start, active)``."""
        e = self._epoch_of(slot)
        n = len(e.active)
        k = (slot - e.first_slot) // n
        return Round(e.first_round + k, e.first_slot + k * n, e.active)

    def round_start(self, number: int) -> int:
        """The first slot of round ``number``."""
        if number < 0:
            raise ValueError("round numbers are >= 0")
        idx = 0
        for i, e in enumerate(self._epochs):
            if e.first_round <= number:
                idx = i
        e = self._epochs[idx]
        return e.first_slot + (number - e.first_round) * len(e.active)

    def witness_at(self, slot: int) -> bytes:
        """The scheduled witness of ``slot`` (>= 1)."""
        r = self.round_of(slot)
        return _order(self.chain_id, r.number, r.active)[slot - r.start]

    def voters_at(self, slot: int) -> tuple[bytes, ...]:
        """The voters of target slot ``slot``: the active set of the round containing it."""
        return self.round_of(slot).active

    def next_round_start(self, after_slot: int) -> int:
        """The first slot > ``after_slot`` that starts a round."""
        s = max(after_slot + 1, 1)
        r = self.round_of(s)
        return r.start if r.start == s else r.start + len(r.active)

    def add_epoch(
        self, first_slot: int, active: Sequence[bytes], *, decided_at: int | None = None
    ) -> None:
        """Use ``active`` from the round starting at ``first_slot`` on.

        ``first_slot`` must be a round start of the current schedule at or after the last
        epoch's first slot (equal: replace the last epoch). ``decided_at`` defaults to
        ``first_slot - 1``; it may not exceed it.
        """
        ordered = _normalize(active)
        if decided_at is None:
            decided_at = first_slot - 1
        if decided_at >= first_slot:
            raise ValueError("an epoch must be decided before its first slot")
        last = self._epochs[-1]
        if first_slot == last.first_slot and len(self._epochs) > 1:
            self._epochs.pop()
            self._starts.pop()
            last = self._epochs[-1]
        if first_slot <= last.first_slot:
            raise ValueError(
                f"epoch at slot {first_slot} does not start after the last one "
                f"(slot {last.first_slot})"
            )
        offset = first_slot - last.first_slot
        n = len(last.active)
        if offset % n:
            raise ValueError(f"slot {first_slot} is not a round start")
        self._epochs.append(Epoch(first_slot, last.first_round + offset // n, ordered, decided_at))
        self._starts.append(first_slot)

    def rollback(self, slot: int) -> None:
        """Drop the epochs decided at a slot above ``slot`` (never the genesis epoch).

        Later epochs were placed on round boundaries of the earlier ones, so everything
        from the first dropped epoch on goes.
        """
        for i in range(1, len(self._epochs)):
            if self._epochs[i].decided_at > slot:
                del self._epochs[i:]
                del self._starts[i:]
                return

    def __repr__(self) -> str:
        return f"Schedule(epochs={len(self._epochs)}, last={self._epochs[-1].first_slot})"
