"""The MUXER ledger: protocol sections 3-5 as a deterministic state machine.

It implements ``consensus.app.Application``. Time is the block's timestamp, never a clock.

Atomicity. Every op handler runs in two phases: first every check (each failure raises
``Rejected`` with its section-9 reason), then the effects, which cannot fail. So an
invalid tx changes nothing at all, without copying state. ``apply_tx`` checks the
envelope rules (expiration, TaPoS, duplicate, fee) before the op's checks.

State layout (keys under the store prefix ``S``; values are msgpack arrays; see
docs/protocol.md for the table):

    a + address                 account   [balance, escrow, approvals, societies]
                                (MUX only; escrow = MUX escrow + MUX charity escrow, for stake)
    b + address + symbol        balance of a user-issued asset (absent when 0)
    A + symbol                  asset     [issuer, precision, max_supply, supply, description,
                                           burned]
    s + society                 society   [name, purpose, rules (12 items), creator, members,
                                           total_karma, total_karma_at, escrow_total,
                                           open_claims, created_at, charity_escrow_total]
    m + society + 00 + address  member    [identity, joined_at, escrow, karma, karma_at,
                                           pledged_total, given_total, open_claim,
                                           charity_escrow, proxy, delegators, former]
                                former: [[proxy, dropped_at], ...] the proxies the member
                                dropped within the society's claim TTL
    d + society + 00 + proxy    the proxy's delegators, sorted [address, ...]
    c + claim_id                claim     [society, claimant, amount, karma, subject, details,
                                           evidence, opened_at, gives_from, closes_at, limit,
                                           received, approve, reject, status, kind, voters,
                                           proxied]
    l + society + 00 + opened_at(8) + claim_id   claim list index (value 0)
    v + claim_id + address      vote      [stance, weight, counted]: weight is the voter's
                                own karma; counted lists the delegators counted through
                                it, [[address, weight], ...] sorted (one entry per proxy
                                vote); [0, 0, []] is an opt-out (a member with a proxy
                                voted 0: its proxy cannot count it on this claim)
    r + society + 00 + address  the sender's open charity request in the society (claim id)
    R + society                 the society's open charity requests [claim_id, ...]
    p + society + 00 + address  standing pledge [amount, interval_s, next_at, executed,
                                           missed, missed_in_row]
    n + next_at(8) + society + 00 + address   due index of standing pledges (value 0)
    w + address                 witness   [signing_key, url, registration_order, votes]
    W                           registered witnesses in registration order [address, ...]
    Q                           open claims by closing [[closes_at, claim_id], ...] sorted
    t + expiration(8) + tx_id   an included tx (value 0): duplicate check and pruning
    X + expiration(8)           how many included tx ids expire at that second
    G                           globals   [burned, next_maintenance_k, pruned_until,
                                           genesis_supply]
    E                           elected set [maintenance_height, [address, ...]]

Comments (op 18) change no state: the ledger hands each block's comments to the node's
comment index (``BlockResult`` keys under the store prefix ``C``, outside the state and its
digest, written and undone with the block).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from consensus.app import BlockContext, BlockResult
from consensus.codec import encode
from consensus.errors import Rejected
from consensus.genesis import Genesis, Params
from consensus.tx import SignedTx
from muxernode import ops
from muxernode.amounts import format_amount
from muxernode.state import State
from storage.kv import KVReader

__all__ = ["Ledger", "decay"]

# record field indexes -------------------------------------------------------------------
BAL, ESC, APPROVALS, SOCIETIES = 0, 1, 2, 3
S_NAME, S_PURPOSE, S_RULES, S_CREATOR, S_MEMBERS, S_KARMA, S_KARMA_AT, S_ESCROW = range(8)
S_OPEN, S_CREATED, S_CHARITY = 8, 9, 10
M_IDENTITY, M_JOINED, M_ESCROW, M_KARMA, M_KARMA_AT, M_PLEDGED, M_GIVEN, M_OPEN = range(8)
M_CHARITY, M_PROXY, M_DELEGATORS, M_FORMER = 8, 9, 10, 11
(C_SOCIETY, C_CLAIMANT, C_AMOUNT, C_KARMA, C_SUBJECT, C_DETAILS, C_EVIDENCE, C_OPENED,
 C_GIVES_FROM, C_CLOSES, C_LIMIT, C_RECEIVED, C_APPROVE, C_REJECT, C_STATUS) = range(15)
C_KIND, C_VOTERS, C_PROXIED = 15, 16, 17
V_STANCE, V_WEIGHT, V_COUNTED = range(3)
A_ISSUER, A_PRECISION, A_MAX, A_SUPPLY, A_DESCRIPTION, A_BURNED = range(6)
P_AMOUNT, P_INTERVAL, P_NEXT, P_EXECUTED, P_MISSED, P_MISSED_IN_ROW = range(6)
W_KEY, W_URL, W_ORDER, W_VOTES = range(4)
G_BURNED, G_NEXT_MAINT, G_PRUNED, G_SUPPLY = range(4)

CLAIM_OPEN, CLAIM_APPROVED, CLAIM_REJECTED, CLAIM_WITHDRAWN = 0, 1, 2, 3
KIND_CLAIM, KIND_CHARITY = 0, 1
R_DECAY_PERIOD, R_DECAY_PPM, R_APPROVAL_BP, R_OBSERVATION, R_WAITING, R_TTL = range(6)
R_BENEFIT, R_BOND, R_MIN_PLEDGE, R_ASSET, R_CHARITY_BP, R_CHARITY_SLOTS = range(6, 12)

MAX_AMOUNT = 2**63 - 1
MAX_DELEGATORS = 1000
MAX_SCHEDULED = 1000  # standing-pledge executions per block (11.3)
MISSES_TO_CANCEL = 3
MUX = ops.MUX
MUX_PRECISION = 5
GLOBALS = b"G"
WITNESSES = b"W"
CLOSE_QUEUE = b"Q"
ELECTED = b"E"
# the node's comment index (store keys outside the state prefix, so outside the digest)
COMMENT_PREFIX = b"C"


def u64(n: int) -> bytes:
    return n.to_bytes(8, "big")


def account_key(address: bytes) -> bytes:
    return b"a" + address


def asset_balance_key(address: bytes, symbol: str) -> bytes:
    return b"b" + address + symbol.encode()


def asset_key(symbol: str) -> bytes:
    return b"A" + symbol.encode()


def society_key(society: str) -> bytes:
    return b"s" + society.encode()


def member_key(society: str, address: bytes) -> bytes:
    return b"m" + society.encode() + b"\x00" + address


def delegators_key(society: str, proxy: bytes) -> bytes:
    return b"d" + society.encode() + b"\x00" + proxy


def _counted_index(counted: list[Any], address: bytes) -> int:
    """Index of address in a vote's counted [[delegator, weight], ...] (sorted), or -1."""
    i = bisect.bisect_left(counted, address, key=lambda e: e[0])
    return i if i < len(counted) and counted[i][0] == address else -1


def claim_key(claim_id: bytes) -> bytes:
    return b"c" + claim_id


def vote_key(claim_id: bytes, address: bytes) -> bytes:
    return b"v" + claim_id + address


def charity_open_key(society: str, address: bytes) -> bytes:
    return b"r" + society.encode() + b"\x00" + address


def charity_list_key(society: str) -> bytes:
    return b"R" + society.encode()


def standing_key(society: str, address: bytes) -> bytes:
    return b"p" + society.encode() + b"\x00" + address


def due_key(next_at: int, society: str, address: bytes) -> bytes:
    # (next_at, society, address) order is key order: the separator 00 sorts below every
    # society id character, so "ab" + 00 < "abc"
    return b"n" + u64(next_at) + society.encode() + b"\x00" + address


def witness_key(address: bytes) -> bytes:
    return b"w" + address


def tx_seen_key(tx: SignedTx) -> bytes:
    return b"t" + u64(tx.expiration) + tx.tx_id


def claim_list_key(society: str, opened_at: int, claim_id: bytes) -> bytes:
    return b"l" + society.encode() + b"\x00" + u64(opened_at) + claim_id


def comment_key(claim_id: bytes, height: int, seq: int) -> bytes:
    """Oldest first in key order: (height, position among the block's comments)."""
    return COMMENT_PREFIX + claim_id + u64(height) + seq.to_bytes(4, "big")


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


def charity_ranking(
    state: State, society_id: str, society: list[Any], t: int
) -> list[bytes]:
    """11.5: the society's open charity requests approved at t, by net desc, then opened_at,
    then claim id; the first ``charity_slots`` of them may receive gifts."""
    ranked = []
    for claim_id in state.get(charity_list_key(society_id)) or []:
        c = state.get(claim_key(claim_id))
        if c is not None and is_approved(c, society, t):
            ranked.append((-(c[C_APPROVE] - c[C_REJECT]), c[C_OPENED], bytes(claim_id)))
    ranked.sort()
    return [claim_id for _, _, claim_id in ranked]


class Ledger:
    """The MUXER application. One instance per view: the chain's, the mempool's."""

    def __init__(self, kv: KVReader, params: Params, genesis_time: int) -> None:
        self.state = State(kv)
        self.params = params
        self.genesis_time = genesis_time
        self._ctx: BlockContext | None = None
        # this block's comments, for the comment index: (claim_id, tx_id, author, text)
        self._comments: list[tuple[bytes, bytes, bytes, str]] = []
        # standing pledges executed by the last begun block (society, address, amount), in
        # execution order: the history index reports them as scheduled pledges
        self.last_scheduled: list[tuple[str, bytes, int]] = []
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
            ops.CreateAsset: self._create_asset,
            ops.IssueAsset: self._issue_asset,
            ops.TransferAsset: self._transfer_asset,
            ops.StandingPledge: self._standing_pledge,
            ops.SetProxy: self._set_proxy,
            ops.CharityRequest: self._charity_request,
            ops.WithdrawClaim: self._withdraw_claim,
            ops.AmendClaim: self._amend_claim,
            ops.Comment: self._comment,
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
        self._comments = []
        self._prune_expired(ctx.timestamp)
        self._close_claims(ctx.timestamp)
        self._run_standing_pledges(ctx)

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
        if self._comments:
            changes, undo = dict(changes), dict(undo)
            for seq, (claim_id, tx_id, author, text) in enumerate(self._comments):
                key = comment_key(claim_id, ctx.height, seq)
                changes[key] = encode([tx_id, ctx.timestamp, author, text])
                undo[key] = None
            self._comments = []
        return BlockResult(digest, changes, undo)

    def abort_block(self) -> None:
        self._ctx = None
        self._comments = []
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
            raise Rejected(
                "fee_too_low",
                f"fee {self._mux(tx.fee)} is below base_fee {self._mux(self.params.base_fee)}",
            )

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

    # --- amounts in messages --------------------------------------------------------------

    @staticmethod
    def _mux(units: int) -> str:
        return format_amount(units, MUX_PRECISION, MUX)

    def _precision(self, symbol: str) -> int:
        if symbol == MUX:
            return MUX_PRECISION
        rec = self.state.get(asset_key(symbol))
        return MUX_PRECISION if rec is None else int(rec[A_PRECISION])

    def _units(self, units: int, symbol: str) -> str:
        """An amount of an asset in whole units with its symbol: "12.5 MUX"."""
        return format_amount(units, self._precision(symbol), symbol)

    def _karma_text(self, karma: int, symbol: str) -> str:
        """Karma counts in the society asset's units, shown in its whole units (no symbol)."""
        return format_amount(karma, self._precision(symbol), "")

    # --- balances and stake ---------------------------------------------------------------

    def _need(self, acct: list[Any], amount: int, what: str = "") -> None:
        if acct[BAL] < amount:
            raise Rejected(
                "insufficient_balance",
                f"balance {self._mux(acct[BAL])} does not cover {self._mux(amount)}{what}",
            )

    def _asset_balance(self, address: bytes, symbol: str) -> int:
        if symbol == MUX:
            acct = self.state.get(account_key(address))
            return 0 if acct is None else int(acct[BAL])
        return int(self.state.get(asset_balance_key(address, symbol)) or 0)

    def _need_asset(self, tx: SignedTx, acct: list[Any], symbol: str, amount: int,
                    what: str) -> None:
        """The MUX balance covers the fee and the asset balance covers amount (one check
        for both when the asset is MUX)."""
        if symbol == MUX:
            self._need(acct, tx.fee + amount, f" (fee + {what})")
            return
        self._need(acct, tx.fee, " (fee)")
        have = self._asset_balance(tx.sender, symbol)
        if have < amount:
            raise Rejected(
                "insufficient_balance",
                f"{symbol} balance {self._units(have, symbol)} does not cover the {what} "
                f"{self._units(amount, symbol)}",
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

    def _credit_asset(self, address: bytes, symbol: str, delta: int) -> None:
        """Change an address's balance of an asset (MUX: its account balance)."""
        if symbol == MUX:
            self._credit(address, delta)
            return
        key = asset_balance_key(address, symbol)
        st = self.state
        value = int(st.get(key) or 0) + delta
        st.put(key, value if value else None)  # a zero balance is no entry

    def _escrow_changed(self, address: bytes, symbol: str, delta: int) -> None:
        """Escrow (or charity escrow) of a MUX society is stake: keep the account's total."""
        if symbol != MUX or not delta:
            return
        acct = self.state.touch(account_key(address))
        acct[ESC] += delta
        if acct[APPROVALS]:
            self._stake_changed(acct, delta)

    def _burn(self, symbol: str, amount: int) -> None:
        if symbol == MUX:
            self.state.touch(GLOBALS)[G_BURNED] += amount
        else:
            self.state.touch(asset_key(symbol))[A_BURNED] += amount

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
    def _karma_at(member: list[Any], rules: list[Any], t: int) -> int:
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

    def _member(self, society: str, address: bytes, who: str = "the sender is") -> list[Any]:
        rec = self.state.get(member_key(society, address))
        if rec is None:
            raise Rejected("not_member", f"{who} not a member of {society!r}")
        return rec  # type: ignore[no-any-return]

    def _get_claim(self, claim_id: bytes) -> list[Any]:
        claim = self.state.get(claim_key(claim_id))
        if claim is None:
            raise Rejected("unknown_claim", f"no claim {claim_id.hex()}")
        return claim  # type: ignore[no-any-return]

    def _open_claim(self, claim_id: bytes) -> list[Any]:
        claim = self._get_claim(claim_id)
        if claim[C_STATUS] != CLAIM_OPEN:
            raise Rejected("claim_closed", f"claim {claim_id.hex()[:10]} is closed")
        return claim

    def _asset(self, symbol: str) -> list[Any]:
        rec = self.state.get(asset_key(symbol)) if symbol != MUX else None
        if rec is None:
            what = "MUX is moved by transfer (op 1)" if symbol == MUX else "no such asset"
            raise Rejected("unknown_asset", f"unknown asset {symbol[:20]!r}: {what}")
        return rec  # type: ignore[no-any-return]

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
        if op.rules.asset != MUX:
            self._asset(op.rules.asset)
        self._need(acct, tx.fee)
        self._pay_fee(tx)
        self.state.put(
            key,
            [op.name, op.purpose, op.rules.stored(), tx.sender, 0, 0, t, 0, 0, t, 0],
        )

    def _join(self, op: ops.Join, tx: SignedTx, acct: list[Any], t: int) -> None:
        self._society(op.society)
        mkey = member_key(op.society, tx.sender)
        if self.state.get(mkey) is not None:
            raise Rejected("already_member", f"already a member of {op.society!r}")
        self._need(acct, tx.fee)
        self._pay_fee(tx)
        st = self.state
        st.put(mkey, [op.identity, t, 0, 0, t, 0, 0, b"", 0, b"", 0, []])
        st.touch(society_key(op.society))[S_MEMBERS] += 1
        st.touch(account_key(tx.sender))[SOCIETIES].append(op.society)

    def _pledge(self, op: ops.Pledge, tx: SignedTx, acct: list[Any], t: int) -> None:
        society = self._society(op.society)
        self._member(op.society, tx.sender)
        rules = society[S_RULES]
        asset = rules[R_ASSET]
        if op.amount < rules[R_MIN_PLEDGE]:
            raise Rejected(
                "bad_op",
                f"pledge {self._units(op.amount, asset)} is below min_pledge "
                f"{self._units(rules[R_MIN_PLEDGE], asset)}",
            )
        if society[S_ESCROW] + society[S_CHARITY] + op.amount > MAX_AMOUNT:
            raise Rejected("bad_op", "escrow total would overflow")  # not with a sane supply
        self._need_asset(tx, acct, asset, op.amount, "pledge")
        self._pay_fee(tx)
        self._do_pledge(op.society, tx.sender, op.amount, t)

    def _do_pledge(self, society_id: str, address: bytes, amount: int, t: int) -> None:
        """The effects of a pledge (op 4, and a standing pledge's execution): balance ->
        escrow and charity escrow (11.2), karma += amount // 2. Cannot fail."""
        st = self.state
        society = st.touch(society_key(society_id))
        member = st.touch(member_key(society_id, address))
        rules = society[S_RULES]
        asset = rules[R_ASSET]
        charity = amount * rules[R_CHARITY_BP] // 10000
        if asset == MUX:
            acct = st.touch(account_key(address))
            acct[BAL] -= amount  # balance -> own escrow: stake unchanged
            acct[ESC] += amount
        else:
            self._credit_asset(address, asset, -amount)
        member[M_ESCROW] += amount - charity
        member[M_CHARITY] += charity
        member[M_PLEDGED] += amount
        society[S_ESCROW] += amount - charity
        society[S_CHARITY] += charity
        self._add_karma(society, member, amount // 2, t)

    def _claim(self, op: ops.Claim, tx: SignedTx, acct: list[Any], t: int) -> None:
        society = self._society(op.society)
        member = self._member(op.society, tx.sender)
        rules = society[S_RULES]
        asset = rules[R_ASSET]
        if t < member[M_JOINED] + rules[R_OBSERVATION]:
            raise Rejected(
                "observation_period",
                f"claims allowed from {member[M_JOINED] + rules[R_OBSERVATION]}",
            )
        if member[M_OPEN]:
            raise Rejected("open_claim_exists", f"claim {bytes(member[M_OPEN]).hex()[:10]} is open")
        karma = self._karma_at(member, rules, t)
        if karma < op.karma:
            raise Rejected(
                "insufficient_karma",
                f"karma is {self._karma_text(karma, asset)}, the claim commits "
                f"{self._karma_text(op.karma, asset)}",
            )
        bond = rules[R_BOND]
        self._need_asset(tx, acct, asset, bond, "claim bond")
        self._pay_fee(tx)
        st = self.state
        self._credit_asset(tx.sender, asset, -bond)
        member = st.touch(member_key(op.society, tx.sender))
        society = st.touch(society_key(op.society))
        self._add_karma(society, member, -op.karma, t)
        member[M_OPEN] = tx.tx_id
        limit = min(op.amount, rules[R_BENEFIT] * op.karma)
        self._open(op.society, society, tx, KIND_CLAIM, op.amount, op.karma, limit,
                   op.subject, op.details, op.evidence, t)

    def _open(self, society_id: str, society: list[Any], tx: SignedTx, kind: int, amount: int,
              karma: int, limit: int, subject: str, details: str, evidence: bytes,
              t: int) -> None:
        """Store a new open claim or charity request (the tx id is its id)."""
        st = self.state
        rules = society[S_RULES]
        closes_at = t + rules[R_TTL]
        society[S_OPEN] += 1
        st.put(
            claim_key(tx.tx_id),
            [society_id, tx.sender, amount, karma, subject, details, evidence,
             t, t + rules[R_WAITING], closes_at, limit, 0, 0, 0, CLAIM_OPEN, kind, 0, 0],
        )
        st.put(claim_list_key(society_id, t, tx.tx_id), 0)
        bisect.insort(st.touch(CLOSE_QUEUE), [closes_at, tx.tx_id])

    def _vote(self, op: ops.Vote, tx: SignedTx, acct: list[Any], t: int) -> None:
        claim = self._open_claim(op.claim_id)
        society_id = claim[C_SOCIETY]
        society = self._society(society_id)
        member = self._member(society_id, tx.sender)
        if claim[C_CLAIMANT] == tx.sender:
            raise Rejected("self_vote", "a claimant cannot vote on their own claim")
        st = self.state
        rules = society[S_RULES]
        own = self._karma_at(member, rules, t)
        # 11.4: the delegators a vote of this member counts, with their weights. A delegator
        # counted here leaves no record of its own: the proxy's vote record lists it with
        # its weight, so a proxy vote is one state entry whatever its delegator count.
        counted: list[list[Any]] = []
        if member[M_DELEGATORS]:
            claimant = claim[C_CLAIMANT]
            opened = claim[C_OPENED]
            period, ppm = rules[R_DECAY_PERIOD], rules[R_DECAY_PPM]
            get = st.get
            prefix = b"v" + op.claim_id
            mprefix = b"m" + society_id.encode() + b"\x00"
            for d in get(delegators_key(society_id, tx.sender)) or []:
                if d == claimant or get(prefix + d) is not None:
                    continue  # d's own vote or opt-out on the claim
                m = get(mprefix + d)
                # d counted through a former proxy of its own (this member excluded: its
                # previous vote is replaced below)
                if m[M_FORMER] and self._counted_via(op.claim_id, m, d, opened, tx.sender):
                    continue
                w = decay(m[M_KARMA], m[M_KARMA_AT], t, period, ppm)
                if w > 0:
                    counted.append([d, w])
        proxied = sum(w for _, w in counted)
        weight = own + proxied
        if weight <= 0:
            raise Rejected("no_karma", "the voter has no karma (own or through delegators)")
        self._need(acct, tx.fee)
        self._pay_fee(tx)
        claim = st.touch(claim_key(op.claim_id))
        self._remove_vote(op.claim_id, claim, tx.sender, member)
        vkey = vote_key(op.claim_id, tx.sender)
        if op.stance == 0:
            # A member with a proxy records an opt-out: its proxy cannot count it on this
            # claim any more. Without a proxy nothing is kept (as in version 1).
            if member[M_PROXY]:
                st.put(vkey, [0, 0, []])
            return
        side = C_APPROVE if op.stance == 1 else C_REJECT
        claim[side] += weight
        claim[C_VOTERS] += 1 + len(counted)
        claim[C_PROXIED] += proxied
        st.put(vkey, [op.stance, own, counted])

    def _counted_via(self, claim_id: bytes, member: list[Any], address: bytes, opened: int,
                     exclude: bytes) -> bytes:
        """The proxy (not ``exclude``) whose vote on the claim counts ``address``, or b"".

        Only the member's current proxy and its former proxies dropped at or after the
        claim opened can have counted it there: a proxy counts a delegator only while it is
        one, and a vote on the claim is at or after its opening. ``member[M_FORMER]`` keeps
        those former proxies with the time they were dropped; this replaces a record per
        counted delegator, and a member that never changed proxy has none to look at."""
        candidates = [bytes(member[M_PROXY])] if member[M_PROXY] else []
        candidates += [bytes(p) for p, until in member[M_FORMER] if until >= opened]
        get = self.state.get
        for p in candidates:
            if p == exclude:
                continue
            rec = get(vote_key(claim_id, p))
            if rec is not None and _counted_index(rec[V_COUNTED], address) >= 0:
                return p
        return b""

    def _remove_vote(self, claim_id: bytes, claim: list[Any], voter: bytes,
                     member: list[Any]) -> None:
        """Take voter's weight out of the tallies: its own vote with every delegator counted
        through it, or (no record of its own) its weight counted through a proxy."""
        st = self.state
        vkey = vote_key(claim_id, voter)
        prev = st.get(vkey)
        if prev is not None:
            st.delete(vkey)
            if prev[V_STANCE] == 0:  # an opt-out carries no weight
                return
            side = C_APPROVE if prev[V_STANCE] == 1 else C_REJECT
            removed = sum(w for _, w in prev[V_COUNTED])
            claim[side] -= prev[V_WEIGHT] + removed
            claim[C_PROXIED] -= removed
            claim[C_VOTERS] -= 1 + len(prev[V_COUNTED])
            return
        via = self._counted_via(claim_id, member, voter, claim[C_OPENED], b"")
        if via:
            rec = st.touch(vote_key(claim_id, via))
            _, w = rec[V_COUNTED].pop(_counted_index(rec[V_COUNTED], voter))
            claim[C_APPROVE if rec[V_STANCE] == 1 else C_REJECT] -= w
            claim[C_PROXIED] -= w
            claim[C_VOTERS] -= 1

    def _give(self, op: ops.Give, tx: SignedTx, acct: list[Any], t: int) -> None:
        claim = self._open_claim(op.claim_id)
        society_id = claim[C_SOCIETY]
        society = self._society(society_id)
        member = self._member(society_id, tx.sender)
        asset = society[S_RULES][R_ASSET]
        charity = claim[C_KIND] == KIND_CHARITY
        if claim[C_CLAIMANT] == tx.sender:
            raise Rejected("self_vote", "a claimant cannot give to their own claim")
        if t < claim[C_GIVES_FROM]:
            raise Rejected("waiting_period", f"gifts open at {claim[C_GIVES_FROM]}")
        if not is_approved(claim, society, t):
            raise Rejected("not_approved", "the claim is not approved")
        if charity:
            slots = society[S_RULES][R_CHARITY_SLOTS]
            if op.claim_id not in charity_ranking(self.state, society_id, society, t)[:slots]:
                raise Rejected(
                    "not_in_charity_slots",
                    f"the request is not among the society's {slots} approved charity "
                    "requests with the most net approval",
                )
        escrow = member[M_CHARITY if charity else M_ESCROW]
        if op.amount > escrow:
            what = "charity escrow" if charity else "escrow"
            raise Rejected("insufficient_escrow", f"{what} is {self._units(escrow, asset)}")
        if claim[C_RECEIVED] + op.amount > claim[C_LIMIT]:
            left = claim[C_LIMIT] - claim[C_RECEIVED]
            raise Rejected("over_limit", f"claim can receive {self._units(left, asset)} more")
        self._need(acct, tx.fee)
        self._pay_fee(tx)
        st = self.state
        self._escrow_changed(tx.sender, asset, -op.amount)
        self._credit_asset(claim[C_CLAIMANT], asset, op.amount)
        member = st.touch(member_key(society_id, tx.sender))
        society = st.touch(society_key(society_id))
        claim = st.touch(claim_key(op.claim_id))
        if charity:
            member[M_CHARITY] -= op.amount
            society[S_CHARITY] -= op.amount
        else:
            member[M_ESCROW] -= op.amount
            society[S_ESCROW] -= op.amount
        member[M_GIVEN] += op.amount
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

    # --- version 2: assets (11.1) ---------------------------------------------------------

    def _create_asset(self, op: ops.CreateAsset, tx: SignedTx, acct: list[Any], t: int) -> None:
        key = asset_key(op.symbol)
        if self.state.get(key) is not None:
            raise Rejected("asset_exists", f"asset {op.symbol} exists")
        self._need(acct, tx.fee)
        self._pay_fee(tx)
        self.state.put(key, [tx.sender, op.precision, op.max_supply, 0, op.description, 0])

    def _issue_asset(self, op: ops.IssueAsset, tx: SignedTx, acct: list[Any], t: int) -> None:
        asset = self._asset(op.symbol)
        if asset[A_ISSUER] != tx.sender:
            raise Rejected("not_issuer", f"only the issuer of {op.symbol} can issue it")
        if asset[A_SUPPLY] + op.amount > asset[A_MAX]:
            left = asset[A_MAX] - asset[A_SUPPLY]
            raise Rejected(
                "over_supply",
                f"{op.symbol} can be issued {self._units(left, op.symbol)} more "
                f"(max_supply {self._units(asset[A_MAX], op.symbol)})",
            )
        self._need(acct, tx.fee)
        self._pay_fee(tx)
        self.state.touch(asset_key(op.symbol))[A_SUPPLY] += op.amount
        self._credit_asset(op.to, op.symbol, op.amount)

    def _transfer_asset(
        self, op: ops.TransferAsset, tx: SignedTx, acct: list[Any], t: int
    ) -> None:
        self._asset(op.symbol)
        self._need_asset(tx, acct, op.symbol, op.amount, "amount")
        self._pay_fee(tx)
        self._credit_asset(tx.sender, op.symbol, -op.amount)
        self._credit_asset(op.to, op.symbol, op.amount)

    # --- version 2: standing pledges (11.3) -----------------------------------------------

    def _standing_pledge(
        self, op: ops.StandingPledge, tx: SignedTx, acct: list[Any], t: int
    ) -> None:
        society = self._society(op.society)
        self._member(op.society, tx.sender)
        st = self.state
        skey = standing_key(op.society, tx.sender)
        old = st.get(skey)
        if op.cancels:
            if old is None:
                raise Rejected("no_standing_pledge", f"no standing pledge in {op.society!r}")
        else:
            rules = society[S_RULES]
            asset = rules[R_ASSET]
            if op.amount < rules[R_MIN_PLEDGE]:
                raise Rejected(
                    "bad_op",
                    f"standing pledge {self._units(op.amount, asset)} is below min_pledge "
                    f"{self._units(rules[R_MIN_PLEDGE], asset)}",
                )
            if not rules[R_DECAY_PERIOD] <= op.interval_s <= ops.MAX_INTERVAL:
                raise Rejected(
                    "bad_op",
                    f"interval_s must be in [{rules[R_DECAY_PERIOD]} (the society's "
                    f"decay_period_s), {ops.MAX_INTERVAL}]",
                )
        self._need(acct, tx.fee)
        self._pay_fee(tx)
        if old is not None:
            st.delete(due_key(old[P_NEXT], op.society, tx.sender))
        if op.cancels:
            st.delete(skey)
            return
        next_at = t + op.interval_s
        st.put(skey, [op.amount, op.interval_s, next_at, 0, 0, 0])
        st.put(due_key(next_at, op.society, tx.sender), 0)

    def _run_standing_pledges(self, ctx: BlockContext) -> None:
        """11.3: before the block's txs, execute due standing pledges in (next_at, society,
        address) order, at most MAX_SCHEDULED; the rest stay due for the next block.

        The due index is read committed: no tx of this block has run yet, and pledges set
        by earlier blocks are committed (an execution moves next_at past T, so nothing this
        loop writes is due again in this block)."""
        t = ctx.timestamp
        st = self.state
        fee = self.params.base_fee
        done: list[tuple[str, bytes, int]] = []
        handled = 0
        for key, _ in st.iterate_committed(b"n"):
            if handled >= MAX_SCHEDULED or int.from_bytes(key[1:9], "big") > t:
                break
            handled += 1
            society_id, address = key[9:-21].decode(), key[-20:]
            skey = standing_key(society_id, address)
            rec = st.touch(skey)
            amount = rec[P_AMOUNT]
            society = st.get(society_key(society_id))
            asset = society[S_RULES][R_ASSET]
            mux = self._asset_balance(address, MUX)
            covered = (mux >= fee + amount if asset == MUX
                       else mux >= fee and self._asset_balance(address, asset) >= amount)
            if covered and society[S_ESCROW] + society[S_CHARITY] + amount <= MAX_AMOUNT:
                self._credit(address, -fee)
                self._credit(ctx.producer, fee)
                self._do_pledge(society_id, address, amount, t)
                rec[P_EXECUTED] += 1
                rec[P_MISSED_IN_ROW] = 0
                done.append((society_id, address, amount))
            else:
                rec[P_MISSED] += 1
                rec[P_MISSED_IN_ROW] += 1
            st.delete(key)
            if rec[P_MISSED_IN_ROW] >= MISSES_TO_CANCEL:
                st.delete(skey)
                continue
            interval = rec[P_INTERVAL]
            # next_at += interval_s until next_at > T, in one step
            rec[P_NEXT] += ((t - rec[P_NEXT]) // interval + 1) * interval
            st.put(due_key(rec[P_NEXT], society_id, address), 0)
        self.last_scheduled = done

    # --- version 2: proxies (11.4) ---------------------------------------------------------

    def _set_proxy(self, op: ops.SetProxy, tx: SignedTx, acct: list[Any], t: int) -> None:
        self._society(op.society)
        member = self._member(op.society, tx.sender)
        st = self.state
        current = bytes(member[M_PROXY])
        if op.proxy:
            proxy = self._member(op.society, op.proxy, "the proxy is")
            if op.proxy == tx.sender:
                raise Rejected("self_vote", "a member cannot be their own proxy")
            if proxy[M_PROXY]:
                raise Rejected("proxy_chain", "the proxy has a proxy of its own (no chains)")
            if member[M_DELEGATORS]:
                raise Rejected(
                    "proxy_chain",
                    f"the sender is the proxy of {member[M_DELEGATORS]} member(s) (no chains)",
                )
            if op.proxy != current and proxy[M_DELEGATORS] >= MAX_DELEGATORS:
                raise Rejected(
                    "too_many_delegators", f"the proxy has {MAX_DELEGATORS} delegators already"
                )
        self._need(acct, tx.fee)
        self._pay_fee(tx)
        if op.proxy == current:
            return  # clearing when none is set, or setting the same proxy: no change
        if current:
            lst = st.touch(delegators_key(op.society, current))
            lst.remove(tx.sender)
            if not lst:
                st.delete(delegators_key(op.society, current))
            st.touch(member_key(op.society, current))[M_DELEGATORS] -= 1
        if op.proxy:
            dkey = delegators_key(op.society, op.proxy)
            lst = st.touch(dkey)
            if lst is None:
                st.put(dkey, [tx.sender])
            else:
                bisect.insort(lst, tx.sender)
            st.touch(member_key(op.society, op.proxy))[M_DELEGATORS] += 1
        member = st.touch(member_key(op.society, tx.sender))
        member[M_PROXY] = op.proxy
        if current:
            # Remember the dropped proxy while a claim it may have counted the sender on can
            # still be open (opened at or before now, so closing by now + TTL): see
            # _counted_via. Older entries can match no open claim any more.
            ttl = self._society(op.society)[S_RULES][R_TTL]
            member[M_FORMER] = [e for e in member[M_FORMER] if e[1] + ttl >= t] + [[current, t]]

    # --- version 2: charity requests (11.5) ------------------------------------------------

    def _charity_request(
        self, op: ops.CharityRequest, tx: SignedTx, acct: list[Any], t: int
    ) -> None:
        society = self._society(op.society)
        st = self.state
        okey = charity_open_key(op.society, tx.sender)
        open_id = st.get(okey)
        if open_id is not None:
            raise Rejected(
                "open_claim_exists",
                f"charity request {bytes(open_id).hex()[:10]} of the sender is open",
            )
        rules = society[S_RULES]
        asset = rules[R_ASSET]
        bond = rules[R_BOND]
        self._need_asset(tx, acct, asset, bond, "claim bond")
        self._pay_fee(tx)
        self._credit_asset(tx.sender, asset, -bond)
        society = st.touch(society_key(op.society))
        self._open(op.society, society, tx, KIND_CHARITY, op.amount, 0, op.amount,
                   op.subject, op.details, op.evidence, t)
        st.put(okey, tx.tx_id)
        lkey = charity_list_key(op.society)
        lst = st.touch(lkey)
        if lst is None:
            st.put(lkey, [tx.tx_id])
        else:
            lst.append(tx.tx_id)

    # --- version 2: withdraw, amend, comment (11.6, 11.7) ---------------------------------

    def _claimant_open(self, claim_id: bytes, sender: bytes) -> list[Any]:
        claim = self._get_claim(claim_id)
        if claim[C_CLAIMANT] != sender:
            raise Rejected("not_claimant", "only the claimant can do this")
        if claim[C_STATUS] != CLAIM_OPEN:
            raise Rejected("claim_closed", f"claim {claim_id.hex()[:10]} is closed")
        return claim

    def _withdraw_claim(
        self, op: ops.WithdrawClaim, tx: SignedTx, acct: list[Any], t: int
    ) -> None:
        claim = self._claimant_open(op.claim_id, tx.sender)
        self._need(acct, tx.fee)
        self._pay_fee(tx)
        queue = self.state.touch(CLOSE_QUEUE)
        i = bisect.bisect_left(queue, [claim[C_CLOSES], op.claim_id])
        del queue[i]
        self._close(op.claim_id, CLAIM_WITHDRAWN)

    def _amend_claim(self, op: ops.AmendClaim, tx: SignedTx, acct: list[Any], t: int) -> None:
        claim = self._claimant_open(op.claim_id, tx.sender)
        if claim[C_VOTERS]:
            raise Rejected("has_votes", f"the claim has {claim[C_VOTERS]} vote(s)")
        self._need(acct, tx.fee)
        self._pay_fee(tx)
        claim = self.state.touch(claim_key(op.claim_id))
        claim[C_DETAILS] = op.details
        claim[C_EVIDENCE] = op.evidence

    def _comment(self, op: ops.Comment, tx: SignedTx, acct: list[Any], t: int) -> None:
        claim = self._get_claim(op.claim_id)
        if claim[C_CLAIMANT] != tx.sender:
            self._member(claim[C_SOCIETY], tx.sender)
        self._need(acct, tx.fee)
        self._pay_fee(tx)
        self._comments.append((op.claim_id, tx.tx_id, tx.sender, op.text))

    # --- block-level rules ----------------------------------------------------------------

    def _close(self, claim_id: bytes, outcome: int) -> None:
        """Close an open claim or charity request with outcome: approved returns the bond,
        rejected burns it; withdrawn returns it only if nothing was received and no vote is
        recorded on it.

        11.6 returns a withdrawn claim's bond whenever nothing was received. The society
        simulation (docs/society-economics.md) showed the flaw: a claim being rejected can
        be withdrawn on its last day for free, so the bond never punishes a false claim.
        The closest sound rule (docs/protocol.md, "Deviations") keeps the bond only while
        the claim has no votes, the condition amend_claim already uses."""
        st = self.state
        claim = st.touch(claim_key(claim_id))
        society_id = claim[C_SOCIETY]
        society = st.touch(society_key(society_id))
        asset = society[S_RULES][R_ASSET]
        bond = society[S_RULES][R_BOND]
        claim[C_STATUS] = outcome
        refund = outcome == CLAIM_WITHDRAWN and not claim[C_RECEIVED] and not claim[C_VOTERS]
        if outcome == CLAIM_APPROVED or refund:
            self._credit_asset(claim[C_CLAIMANT], asset, bond)
        else:
            self._burn(asset, bond)
        society[S_OPEN] -= 1
        if claim[C_KIND] == KIND_CHARITY:
            st.delete(charity_open_key(society_id, claim[C_CLAIMANT]))
            lkey = charity_list_key(society_id)
            lst = st.touch(lkey)
            lst.remove(claim_id)
            if not lst:
                st.delete(lkey)
        else:
            st.touch(member_key(society_id, claim[C_CLAIMANT]))[M_OPEN] = b""

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
            claim = st.get(claim_key(claim_id))
            society = st.get(society_key(claim[C_SOCIETY]))
            approved = is_approved(claim, society, t)
            self._close(claim_id, CLAIM_APPROVED if approved else CLAIM_REJECTED)
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
