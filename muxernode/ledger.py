"""The MUXER ledger: protocol sections 3-5 as a deterministic state machine.

It implements ``consensus.app.Application``. Time is the block's timestamp, never a clock.

Atomicity. Every op handler runs in two phases: first every check (each failure raises
``Rejected`` with its section-9 reason), then the effects, which cannot fail. So an
invalid tx changes nothing at all, without copying state. ``apply_tx`` checks the
envelope rules (expiration, TaPoS, duplicate, fee) before the op's checks.

State layout (keys under the store prefix ``S``; values are msgpack arrays; see
docs/protocol-notes.md for the table):

    a + address                 account   [balance, escrow, approvals, societies]
    s + society                 society   [name, purpose, rules, creator, members,
                                           total_karma, total_karma_at, escrow_total,
                                           open_claims, created_at]
    m + society + 00 + address  member    [identity, joined_at, escrow, karma, karma_at,
                                           pledged_total, given_total, open_claim]
    c + claim_id                claim     [society, claimant, amount, karma, subject, details,
                                           evidence, opened_at, gives_from, closes_at, limit,
                                           received, approve, reject, status]
    l + society + 00 + opened_at(8) + claim_id   claim list index (value 0)
    v + claim_id + address      vote      [stance, weight]
    w + address                 witness   [signing_key, url, registration_order, votes]
    W                           registered witnesses in registration order [address, ...]
    Q                           open claims by closing [[closes_at, claim_id], ...] sorted
    t + expiration(8) + tx_id   an included tx (value 0): duplicate check and pruning
    X + expiration(8)           how many included tx ids expire at that second
    G                           globals   [burned, next_maintenance_k, pruned_until,
                                           genesis_supply]
    E                           elected set [maintenance_height, [address, ...]]
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from consensus.app import BlockContext, BlockResult
from consensus.errors import Rejected
from consensus.genesis import Genesis, Params
from consensus.tx import SignedTx
from muxernode import ops
from muxernode.state import State
from storage.kv import KVReader

__all__ = ["Ledger", "decay"]

# record field indexes -------------------------------------------------------------------
BAL, ESC, APPROVALS, SOCIETIES = 0, 1, 2, 3
S_NAME, S_PURPOSE, S_RULES, S_CREATOR, S_MEMBERS, S_KARMA, S_KARMA_AT, S_ESCROW = range(8)
S_OPEN, S_CREATED = 8, 9
M_IDENTITY, M_JOINED, M_ESCROW, M_KARMA, M_KARMA_AT, M_PLEDGED, M_GIVEN, M_OPEN = range(8)
(C_SOCIETY, C_CLAIMANT, C_AMOUNT, C_KARMA, C_SUBJECT, C_DETAILS, C_EVIDENCE, C_OPENED,
 C_GIVES_FROM, C_CLOSES, C_LIMIT, C_RECEIVED, C_APPROVE, C_REJECT, C_STATUS) = range(15)
W_KEY, W_URL, W_ORDER, W_VOTES = range(4)
G_BURNED, G_NEXT_MAINT, G_PRUNED, G_SUPPLY = range(4)

CLAIM_OPEN, CLAIM_APPROVED, CLAIM_REJECTED = 0, 1, 2
R_DECAY_PERIOD, R_DECAY_PPM, R_APPROVAL_BP, R_OBSERVATION, R_WAITING, R_TTL = range(6)
R_BENEFIT, R_BOND, R_MIN_PLEDGE = 6, 7, 8

MAX_AMOUNT = 2**63 - 1
GLOBALS = b"G"
WITNESSES = b"W"
CLOSE_QUEUE = b"Q"
ELECTED = b"E"


def u64(n: int) -> bytes:
    return n.to_bytes(8, "big")


def account_key(address: bytes) -> bytes:
    return b"a" + address


def society_key(society: str) -> bytes:
    return b"s" + society.encode()


def member_key(society: str, address: bytes) -> bytes:
    return b"m" + society.encode() + b"\x00" + address


def claim_key(claim_id: bytes) -> bytes:
    return b"c" + claim_id


def vote_key(claim_id: bytes, address: bytes) -> bytes:
    return b"v" + claim_id + address


def witness_key(address: bytes) -> bytes:
    return b"w" + address


def tx_seen_key(tx: SignedTx) -> bytes:
    return b"t" + u64(tx.expiration) + tx.tx_id


def claim_list_key(society: str, opened_at: int, claim_id: bytes) -> bytes:
    return b"l" + society.encode() + b"\x00" + u64(opened_at) + claim_id


@lru_cache(maxsize=256)  # entries can be big ints (n up to 4096): keep few
def _decay_factor(ppm: int, n: int) -> tuple[int, int]:
    return (10**6 - ppm) ** n, 10 ** (6 * n)


def decay(k: int, t0: int, t: int, period: int, ppm: int) -> int:
    """Karma k stored at t0, worth at t (section 4.2), in exact integers."""
    n = t // period - t0 // period
    if n <= 0 or ppm == 0:
        return k
    if n > 4096:
        return 0
    num, den = _decay_factor(ppm, n)
    return k * num // den


def is_approved(claim: list[Any], society: list[Any], t: int) -> bool:
    """Section 4.4: net > 0 and net * 10000 >= approval_bp * total_karma(t)."""
    net = claim[C_APPROVE] - claim[C_REJECT]
    if net <= 0:
        return False
    rules = society[S_RULES]
    total = decay(society[S_KARMA], society[S_KARMA_AT], t, rules[R_DECAY_PERIOD],
                  rules[R_DECAY_PPM])
    return bool(net * 10000 >= rules[R_APPROVAL_BP] * total)


class Ledger:
    """The MUXER application. One instance per view: the chain's, the mempool's."""

    def __init__(self, kv: KVReader, params: Params, genesis_time: int) -> None:
        self.state = State(kv)
        self.params = params
        self.genesis_time = genesis_time
        self._ctx: BlockContext | None = None
        self._handlers: dict[type, Callable[[Any, SignedTx, list[Any], int], None]] = {
            ops.Transfer: self._transfer,
            ops.CreateSociety: self._create_society,
            ops.Join: self._join,
            ops.Pledge: self._pledge,
            ops.Claim: self._claim,
            ops.Vote: self._vote,
            ops.Give: self._give,
            ops.RegisterWitness: self._register_witness,
            ops.VoteWitness: self._vote_witness,
        }

    # --- genesis ------------------------------------------------------------------------

    def init_genesis(self, genesis: Genesis) -> BlockResult:
        """Write the genesis state (height 0); returns the changes to store."""
        st = self.state
        for address, amount in genesis.balances:
            acct = st.touch(account_key(address)) or [0, 0, [], []]
            acct[BAL] += amount
            st.put(account_key(address), acct)
        order: list[bytes] = []
        for i, w in enumerate(genesis.witnesses):
            st.put(witness_key(w.address), [w.signing_key, "", i, 0])
            order.append(w.address)
        st.put(WITNESSES, order)
        st.put(GLOBALS, [0, 1, genesis.genesis_time, genesis.supply])
        st.put(CLOSE_QUEUE, [])
        st.put(ELECTED, [0, order[: self.params.active_witnesses]])
        digest, changes, undo = st.commit()
        return BlockResult(digest, changes, undo)

    # --- Application interface ------------------------------------------------------------

    def begin_block(self, ctx: BlockContext) -> None:
        if self.state.in_block:
            raise RuntimeError("begin_block while a block is open")
        self._ctx = ctx
        self._prune_expired(ctx.timestamp)
        self._close_claims(ctx.timestamp)

    def apply_tx(self, tx: SignedTx) -> None:
        ctx = self._ctx
        if ctx is None:
            raise RuntimeError("apply_tx outside a block")
        self.check_envelope(tx, ctx)
        op = ops.op_of(tx)
        st = self.state
        acct = st.get(account_key(tx.sender))
        if acct is None:
            raise Rejected("insufficient_balance", "the sender has no balance")
        self._handlers[type(op)](op, tx, acct, ctx.timestamp)
        # effects common to every op (its handler checked that the fee is covered)
        self._record_tx(tx)

    def end_block(self) -> BlockResult:
        ctx = self._ctx
        if ctx is None:
            raise RuntimeError("end_block outside a block")
        self._maintenance(ctx)
        self._ctx = None
        digest, changes, undo = self.state.commit()
        return BlockResult(digest, changes, undo)

    def abort_block(self) -> None:
        self._ctx = None
        self.state.rollback()

    def state_digest(self) -> bytes:
        return self.state.digest()

    def elected_witnesses(self) -> tuple[int, list[bytes]] | None:
        rec = self.state.get(ELECTED)
        return None if rec is None else (rec[0], list(rec[1]))

    def witness_signing_key(self, address: bytes) -> bytes | None:
        rec = self.state.get(witness_key(address))
        return None if rec is None else bytes(rec[W_KEY])

    # --- envelope rules (section 3) -------------------------------------------------------

    def check_envelope(self, tx: SignedTx, ctx: BlockContext) -> None:
        t = ctx.timestamp
        if tx.expiration <= t:
            raise Rejected("expired", f"expiration {tx.expiration} is not after block time {t}")
        if tx.expiration > t + self.params.max_tx_lifetime_s:
            raise Rejected(
                "expiration_too_far",
                f"expiration {tx.expiration} is more than {self.params.max_tx_lifetime_s} s "
                f"after block time {t}",
            )
        if ctx.tapos(tx.ref_block_num) != tx.ref_block_prefix:
            raise Rejected("unknown_ref_block")
        if self.state.get(tx_seen_key(tx)) is not None:
            raise Rejected("duplicate")
        if tx.fee < self.params.base_fee:
            raise Rejected("fee_too_low", f"fee {tx.fee} is below base_fee {self.params.base_fee}")

    def _record_tx(self, tx: SignedTx) -> None:
        # The id is keyed under its expiration (a duplicate has the same unsigned bytes, so
        # the same expiration): one key serves the duplicate check and ordered pruning. A
        # per-second count says which seconds have ids to prune.
        st = self.state
        st.put(tx_seen_key(tx), 0)
        count_key = b"X" + u64(tx.expiration)
        count = st.get(count_key)
        st.put(count_key, 1 if count is None else count + 1)

    def _prune_expired(self, t: int) -> None:
        """Forget tx ids whose expiration <= t: they can never be valid again."""
        st = self.state
        g = st.get(GLOBALS)
        start = g[G_PRUNED] + 1
        if start > t:
            return
        # Ids only exist for expirations at most max_tx_lifetime_s past the last block
        # time that was pruned, so the loop is bounded by that, not by the gap in time.
        stop = min(t, g[G_PRUNED] + self.params.max_tx_lifetime_s + 1)
        for second in range(start, stop + 1):
            count_key = b"X" + u64(second)
            if st.get(count_key) is None:
                continue
            # every id expiring then was committed by an earlier block (expiration > T)
            for key, _ in st.iterate_committed(b"t" + u64(second)):
                st.delete(key)
            st.delete(count_key)
        st.touch(GLOBALS)[G_PRUNED] = t

    # --- balances and stake ---------------------------------------------------------------

    def _need(self, acct: list[Any], amount: int, what: str = "") -> None:
        if acct[BAL] < amount:
            raise Rejected(
                "insufficient_balance",
                f"balance {acct[BAL]} does not cover {amount}{what}",
            )

    def _credit(self, address: bytes, delta: int) -> list[Any]:
        """Change an account's balance by delta (either sign), keeping witness votes live."""
        st = self.state
        key = account_key(address)
        acct: list[Any] | None = st.touch(key)
        if acct is None:
            acct = [0, 0, [], []]
            st.put(key, acct)
        acct[BAL] += delta
        if acct[APPROVALS] and delta:
            self._stake_changed(acct, delta)
        return acct

    def _stake_changed(self, acct: list[Any], delta: int) -> None:
        st = self.state
        for w in acct[APPROVALS]:
            st.touch(witness_key(w))[W_VOTES] += delta

    def _pay_fee(self, tx: SignedTx) -> list[Any]:
        ctx = self._ctx
        assert ctx is not None
        acct = self._credit(tx.sender, -tx.fee)
        self._credit(ctx.producer, tx.fee)
        return acct

    # --- karma ----------------------------------------------------------------------------

    @staticmethod
    def _karma_at(member: list[Any], rules: list[int], t: int) -> int:
        return decay(member[M_KARMA], member[M_KARMA_AT], t, rules[R_DECAY_PERIOD],
                     rules[R_DECAY_PPM])

    @staticmethod
    def _total_karma_at(society: list[Any], t: int) -> int:
        rules = society[S_RULES]
        return decay(society[S_KARMA], society[S_KARMA_AT], t, rules[R_DECAY_PERIOD],
                     rules[R_DECAY_PPM])

    def _add_karma(self, society: list[Any], member: list[Any], delta: int, t: int) -> None:
        """Change a member's karma and the society total by delta (decayed to t first)."""
        rules = society[S_RULES]
        member[M_KARMA] = max(0, self._karma_at(member, rules, t) + delta)
        member[M_KARMA_AT] = t
        society[S_KARMA] = max(0, self._total_karma_at(society, t) + delta)
        society[S_KARMA_AT] = t

    # --- lookups with reasons -------------------------------------------------------------

    def _society(self, society: str) -> list[Any]:
        rec = self.state.get(society_key(society))
        if rec is None:
            raise Rejected("unknown_society", f"no society {society!r}")
        return rec  # type: ignore[no-any-return]

    def _member(self, society: str, address: bytes) -> list[Any]:
        rec = self.state.get(member_key(society, address))
        if rec is None:
            raise Rejected("not_member", f"not a member of {society!r}")
        return rec  # type: ignore[no-any-return]

    def _open_claim(self, claim_id: bytes) -> list[Any]:
        claim = self.state.get(claim_key(claim_id))
        if claim is None:
            raise Rejected("unknown_claim", f"no claim {claim_id.hex()}")
        if claim[C_STATUS] != CLAIM_OPEN:
            raise Rejected("claim_closed")
        return claim  # type: ignore[no-any-return]

    # --- operations (check phase, then effects) -------------------------------------------

    def _transfer(self, op: ops.Transfer, tx: SignedTx, acct: list[Any], t: int) -> None:
        self._need(acct, tx.fee + op.amount, " (fee + amount)")
        self._pay_fee(tx)
        self._credit(tx.sender, -op.amount)
        self._credit(op.to, op.amount)

    def _create_society(
        self, op: ops.CreateSociety, tx: SignedTx, acct: list[Any], t: int
    ) -> None:
        key = society_key(op.society)
        if self.state.get(key) is not None:
            raise Rejected("society_exists", f"society {op.society!r} exists")
        self._need(acct, tx.fee)
        self._pay_fee(tx)
        self.state.put(
            key,
            [op.name, op.purpose, op.rules.as_list(), tx.sender, 0, 0, t, 0, 0, t],
        )

    def _join(self, op: ops.Join, tx: SignedTx, acct: list[Any], t: int) -> None:
        self._society(op.society)
        mkey = member_key(op.society, tx.sender)
        if self.state.get(mkey) is not None:
            raise Rejected("already_member", f"already a member of {op.society!r}")
        self._need(acct, tx.fee)
        self._pay_fee(tx)
        st = self.state
        st.put(mkey, [op.identity, t, 0, 0, t, 0, 0, b""])
        st.touch(society_key(op.society))[S_MEMBERS] += 1
        st.touch(account_key(tx.sender))[SOCIETIES].append(op.society)

    def _pledge(self, op: ops.Pledge, tx: SignedTx, acct: list[Any], t: int) -> None:
        society = self._society(op.society)
        self._member(op.society, tx.sender)
        if op.amount < society[S_RULES][R_MIN_PLEDGE]:
            raise Rejected(
                "bad_op", f"pledge {op.amount} is below min_pledge {society[S_RULES][R_MIN_PLEDGE]}"
            )
        if society[S_ESCROW] + op.amount > MAX_AMOUNT:  # cannot happen with a sane supply
            raise Rejected("bad_op", "escrow total would overflow")
        self._need(acct, tx.fee + op.amount, " (fee + pledge)")
        self._pay_fee(tx)
        st = self.state
        acct = st.touch(account_key(tx.sender))
        acct[BAL] -= op.amount  # balance -> own escrow: stake unchanged
        acct[ESC] += op.amount
        member = st.touch(member_key(op.society, tx.sender))
        society = st.touch(society_key(op.society))
        member[M_ESCROW] += op.amount
        member[M_PLEDGED] += op.amount
        society[S_ESCROW] += op.amount
        self._add_karma(society, member, op.amount // 2, t)

    def _claim(self, op: ops.Claim, tx: SignedTx, acct: list[Any], t: int) -> None:
        society = self._society(op.society)
        member = self._member(op.society, tx.sender)
        rules = society[S_RULES]
        if t < member[M_JOINED] + rules[R_OBSERVATION]:
            raise Rejected(
                "observation_period",
                f"claims allowed from {member[M_JOINED] + rules[R_OBSERVATION]}",
            )
        if member[M_OPEN]:
            raise Rejected("open_claim_exists")
        karma = self._karma_at(member, rules, t)
        if karma < op.karma:
            raise Rejected("insufficient_karma", f"karma is {karma}, claim commits {op.karma}")
        bond = rules[R_BOND]
        self._need(acct, tx.fee + bond, " (fee + claim bond)")
        self._pay_fee(tx)
        st = self.state
        self._credit(tx.sender, -bond)
        member = st.touch(member_key(op.society, tx.sender))
        society = st.touch(society_key(op.society))
        self._add_karma(society, member, -op.karma, t)
        member[M_OPEN] = tx.tx_id
        society[S_OPEN] += 1
        closes_at = t + rules[R_TTL]
        limit = min(op.amount, rules[R_BENEFIT] * op.karma)
        st.put(
            claim_key(tx.tx_id),
            [op.society, tx.sender, op.amount, op.karma, op.subject, op.details, op.evidence,
             t, t + rules[R_WAITING], closes_at, limit, 0, 0, 0, CLAIM_OPEN],
        )
        st.put(claim_list_key(op.society, t, tx.tx_id), 0)
        queue = st.touch(CLOSE_QUEUE)
        bisect.insort(queue, [closes_at, tx.tx_id])

    def _vote(self, op: ops.Vote, tx: SignedTx, acct: list[Any], t: int) -> None:
        claim = self._open_claim(op.claim_id)
        society_id = claim[C_SOCIETY]
        society = self._society(society_id)
        member = self._member(society_id, tx.sender)
        if claim[C_CLAIMANT] == tx.sender:
            raise Rejected("self_vote")
        weight = self._karma_at(member, society[S_RULES], t)
        if weight <= 0:
            raise Rejected("no_karma")
        self._need(acct, tx.fee)
        self._pay_fee(tx)
        st = self.state
        claim = st.touch(claim_key(op.claim_id))
        vkey = vote_key(op.claim_id, tx.sender)
        previous = st.get(vkey)
        if previous is not None:
            claim[C_APPROVE if previous[0] == 1 else C_REJECT] -= previous[1]
        if op.stance == 0:
            st.delete(vkey)
        else:
            claim[C_APPROVE if op.stance == 1 else C_REJECT] += weight
            st.put(vkey, [op.stance, weight])

    def _give(self, op: ops.Give, tx: SignedTx, acct: list[Any], t: int) -> None:
        claim = self._open_claim(op.claim_id)
        society_id = claim[C_SOCIETY]
        society = self._society(society_id)
        member = self._member(society_id, tx.sender)
        if claim[C_CLAIMANT] == tx.sender:
            raise Rejected("self_vote", "a claimant cannot give to their own claim")
        if t < claim[C_GIVES_FROM]:
            raise Rejected("waiting_period", f"gifts open at {claim[C_GIVES_FROM]}")
        if not is_approved(claim, society, t):
            raise Rejected("not_approved")
        if op.amount > member[M_ESCROW]:
            raise Rejected("insufficient_escrow", f"escrow is {member[M_ESCROW]}")
        if claim[C_RECEIVED] + op.amount > claim[C_LIMIT]:
            raise Rejected(
                "over_limit", f"claim can receive {claim[C_LIMIT] - claim[C_RECEIVED]} more"
            )
        self._need(acct, tx.fee)
        self._pay_fee(tx)
        st = self.state
        giver = st.touch(account_key(tx.sender))
        giver[ESC] -= op.amount
        if giver[APPROVALS]:
            self._stake_changed(giver, -op.amount)
        self._credit(claim[C_CLAIMANT], op.amount)
        member = st.touch(member_key(society_id, tx.sender))
        society = st.touch(society_key(society_id))
        claim = st.touch(claim_key(op.claim_id))
        member[M_ESCROW] -= op.amount
        member[M_GIVEN] += op.amount
        society[S_ESCROW] -= op.amount
        claim[C_RECEIVED] += op.amount
        self._add_karma(society, member, op.amount // 2, t)

    def _register_witness(
        self, op: ops.RegisterWitness, tx: SignedTx, acct: list[Any], t: int
    ) -> None:
        self._need(acct, tx.fee)
        self._pay_fee(tx)
        st = self.state
        wkey = witness_key(tx.sender)
        rec = st.touch(wkey)
        if rec is None:
            order = st.touch(WITNESSES)
            # votes: the stake of accounts already approving this address is 0, because
            # vote_witness only accepts registered witnesses.
            st.put(wkey, [op.signing_key, op.url, len(order), 0])
            order.append(tx.sender)
        else:
            rec[W_KEY] = op.signing_key
            rec[W_URL] = op.url

    def _vote_witness(self, op: ops.VoteWitness, tx: SignedTx, acct: list[Any], t: int) -> None:
        st = self.state
        for w in op.witnesses:
            if st.get(witness_key(w)) is None:
                raise Rejected("unknown_witness", f"{w.hex()} is not a registered witness")
        self._need(acct, tx.fee)
        self._pay_fee(tx)
        acct = st.touch(account_key(tx.sender))
        stake = acct[BAL] + acct[ESC]
        self._stake_changed(acct, -stake)
        acct[APPROVALS] = list(op.witnesses)
        self._stake_changed(acct, stake)

    # --- block-level rules ----------------------------------------------------------------

    def _close_claims(self, t: int) -> None:
        """Section 4.6: close every open claim with closes_at <= t, in (closes_at, id) order."""
        st = self.state
        queue = st.get(CLOSE_QUEUE)
        if not queue or queue[0][0] > t:
            return
        queue = st.touch(CLOSE_QUEUE)
        n = 0
        while n < len(queue) and queue[n][0] <= t:
            claim_id = queue[n][1]
            n += 1
            claim = st.touch(claim_key(claim_id))
            society = st.touch(society_key(claim[C_SOCIETY]))
            bond = society[S_RULES][R_BOND]
            if is_approved(claim, society, t):
                claim[C_STATUS] = CLAIM_APPROVED
                self._credit(claim[C_CLAIMANT], bond)
            else:
                claim[C_STATUS] = CLAIM_REJECTED
                st.touch(GLOBALS)[G_BURNED] += bond
            society[S_OPEN] -= 1
            member = st.touch(member_key(claim[C_SOCIETY], claim[C_CLAIMANT]))
            member[M_OPEN] = b""
        del queue[:n]

    def _maintenance(self, ctx: BlockContext) -> None:
        """Section 5: tally approvals at the first block at or after each maintenance time."""
        st = self.state
        g = st.get(GLOBALS)
        interval = self.params.maintenance_interval_s
        if ctx.timestamp < self.genesis_time + g[G_NEXT_MAINT] * interval:
            return
        st.touch(GLOBALS)[G_NEXT_MAINT] = (ctx.timestamp - self.genesis_time) // interval + 1
        ranked = []
        for address in st.get(WITNESSES):
            rec = st.get(witness_key(address))
            ranked.append((-rec[W_VOTES], rec[W_ORDER], address))
        ranked.sort()
        elected = [address for _, _, address in ranked[: self.params.active_witnesses]]
        st.put(ELECTED, [ctx.height, elected])
