"""A small typed harness for driving the MUXER ledger directly (no chain, no network).

``Chain`` runs blocks on a ``MemoryKV`` the way ``consensus.chain`` does: begin_block with a
``BlockContext`` (strictly increasing timestamps, a TaPoS function over synthetic block ids),
apply_tx for each tx, end_block, then the block's changes are written to the store. After
every block it checks that the incremental state digest equals ``recompute_digest(kv)``.

Keys come from fixed seeds, so every run builds the same txs and the same state.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from consensus.app import BlockContext, BlockResult
from consensus.crypto import PrivateKey, sha256
from consensus.errors import Rejected
from consensus.genesis import Genesis, parse_genesis
from consensus.tx import SignedTx, build_tx
from muxernode import ledger as L
from muxernode.ledger import Ledger
from muxernode.ops import Rules
from muxernode.state import DIGEST_KEY, STATE_PREFIX, recompute_digest
from storage.kv import KVReader, MemoryKV

__all__ = [
    "ALICE",
    "BASE_FEE",
    "BOB",
    "CAROL",
    "DAVE",
    "ERIN",
    "FUNDS",
    "GENESIS_TIME",
    "LIFETIME",
    "MAINT",
    "NOBODY",
    "POOR",
    "POOR_FUNDS",
    "RULES",
    "SOC",
    "WITNESS",
    "WITNESS2",
    "Chain",
    "asset_conservation",
    "check_witness_votes",
    "conservation_total",
    "key",
    "make_genesis",
    "op_amend",
    "op_charity",
    "op_claim",
    "op_comment",
    "op_create",
    "op_create_asset",
    "op_give",
    "op_issue_asset",
    "op_join",
    "op_pledge",
    "op_register_witness",
    "op_set_proxy",
    "op_standing",
    "op_transfer",
    "op_transfer_asset",
    "op_vote",
    "op_vote_witness",
    "op_withdraw",
    "store_contents",
]


def key(seed_byte: int) -> PrivateKey:
    """The test key with seed ``bytes([seed_byte]) * 32``."""
    return PrivateKey(bytes([seed_byte]) * 32)


WITNESS = key(1)
WITNESS2 = key(2)
ALICE = key(10)
BOB = key(11)
CAROL = key(12)
DAVE = key(13)
ERIN = key(14)
POOR = key(20)  # funded with POOR_FUNDS only
NOBODY = key(21)  # never funded: no account record

GENESIS_TIME = 1_000_000  # a multiple of every period used in the tests
BASE_FEE = 10
LIFETIME = 600  # max_tx_lifetime_s
MAINT = 60  # maintenance_interval_s
FUNDS = 10**12
POOR_FUNDS = 1_000

SOC = "soc"
# decay_period_s, decay_ppm, approval_bp, observation_s, waiting_s, claim_ttl_s,
# benefit_ratio, claim_bond, min_pledge. 10 % decay per 100 s, 30 % net approval.
RULES = Rules(100, 100_000, 3_000, 10, 5, 50, 10, 1_000, 100)


def make_genesis(
    balances: Sequence[tuple[PrivateKey, int]] | None = None,
    witnesses: Sequence[PrivateKey] = (WITNESS,),
    genesis_time: int = GENESIS_TIME,
    **params: int,
) -> Genesis:
    """A genesis with the given witnesses and funded accounts (defaults: the test cast)."""
    if balances is None:
        balances = [(k, FUNDS) for k in (ALICE, BOB, CAROL, DAVE, ERIN)] + [(POOR, POOR_FUNDS)]
    p: dict[str, int] = {
        "block_interval_s": 1,
        "active_witnesses": 1,
        "maintenance_interval_s": MAINT,
        "max_tx_lifetime_s": LIFETIME,
        "base_fee": BASE_FEE,
    }
    p.update(params)
    return parse_genesis(
        {
            "chain_name": "ledger-tests",
            "genesis_time": genesis_time,
            "params": p,
            "witnesses": [
                {"name": f"w{i + 1}", "address": w.address_text, "signing_key": w.public_key.hex()}
                for i, w in enumerate(witnesses)
            ],
            "balances": [{"address": k.address_text, "amount": a} for k, a in balances],
        }
    )


# --- op builders (the arrays of protocol section 3) ----------------------------------------


def op_transfer(to: bytes, amount: int, memo: str = "") -> list[Any]:
    return [1, to, amount, memo]


def op_create(
    society: str = SOC, rules: Rules | list[Any] = RULES, name: str = "A society",
    purpose: str = "Tests",
) -> list[Any]:
    return [2, society, name, purpose, rules.as_list() if isinstance(rules, Rules) else rules]


def op_join(society: str = SOC, identity: str = "someone") -> list[Any]:
    return [3, society, identity]


def op_pledge(amount: int, society: str = SOC) -> list[Any]:
    return [4, society, amount]


def op_claim(
    amount: int, karma: int, society: str = SOC, subject: str = "help",
    details: str = "details", evidence: bytes = bytes(32),
) -> list[Any]:
    return [5, society, amount, karma, subject, details, evidence]


def op_vote(claim_id: bytes, stance: int) -> list[Any]:
    return [6, claim_id, stance]


def op_give(claim_id: bytes, amount: int) -> list[Any]:
    return [7, claim_id, amount]


def op_register_witness(signing_key: bytes, url: str = "") -> list[Any]:
    return [8, signing_key, url]


def op_vote_witness(witnesses: Iterable[bytes]) -> list[Any]:
    return [9, list(witnesses)]


def op_create_asset(symbol: str = "BTC", precision: int = 8, max_supply: int = 10**15,
                    description: str = "an IOU") -> list[Any]:
    return [10, symbol, precision, max_supply, description]


def op_issue_asset(to: bytes, amount: int, symbol: str = "BTC", memo: str = "") -> list[Any]:
    return [11, symbol, to, amount, memo]


def op_transfer_asset(to: bytes, amount: int, symbol: str = "BTC", memo: str = "") -> list[Any]:
    return [12, symbol, to, amount, memo]


def op_standing(amount: int, interval_s: int, society: str = SOC) -> list[Any]:
    return [13, society, amount, interval_s]


def op_set_proxy(proxy: bytes, society: str = SOC) -> list[Any]:
    return [14, society, proxy]


def op_charity(amount: int, society: str = SOC, subject: str = "roof",
               details: str = "details", evidence: bytes = bytes(32)) -> list[Any]:
    return [15, society, amount, subject, details, evidence]


def op_withdraw(claim_id: bytes) -> list[Any]:
    return [16, claim_id]


def op_amend(claim_id: bytes, details: str = "more", evidence: bytes = b"\x01" * 32) -> list[Any]:
    return [17, claim_id, details, evidence]


def op_comment(claim_id: bytes, text: str = "a question") -> list[Any]:
    return [18, claim_id, text]


# --- the chain ------------------------------------------------------------------------------


class Chain:
    """Blocks applied to a Ledger over a MemoryKV, with synthetic block ids for TaPoS."""

    def __init__(self, genesis: Genesis | None = None) -> None:
        self.genesis = genesis if genesis is not None else make_genesis()
        self.kv = MemoryKV()
        self.ledger = Ledger(self.kv, self.genesis.params, self.genesis.genesis_time)
        result = self.ledger.init_genesis(self.genesis)
        self.kv.write(result.changes)
        assert recompute_digest(self.kv) == result.state_digest
        self.height = 0  # of the last committed block
        self.time = self.genesis.genesis_time  # of the last committed block
        self.ids: list[bytes] = [self.genesis.chain_id]
        self.digests: list[bytes] = [result.state_digest]
        self.results: list[BlockResult] = [result]
        self._open: BlockContext | None = None

    # --- blocks ---------------------------------------------------------------------------

    @property
    def chain_id(self) -> bytes:
        return self.genesis.chain_id

    @property
    def digest(self) -> bytes:
        return self.digests[-1]

    @property
    def next_time(self) -> int:
        """The open block's timestamp, or the next slot after the head."""
        return self._open.timestamp if self._open is not None else self.time + 1

    def block_id(self, height: int) -> bytes:
        return self.ids[height]

    def tapos(self, ref_block_num: int) -> int | None:
        """The id prefix of the most recent block at or below the head with those low bits."""
        h = self.height - ((self.height - ref_block_num) & 0xFFFF)
        if h < 0:
            return None
        return int.from_bytes(self.ids[h][:4], "big")

    def begin(
        self, *, at: int | None = None, dt: int = 1, producer: bytes | None = None
    ) -> BlockContext:
        assert self._open is None, "a block is already open"
        t = at if at is not None else self.time + dt
        assert t > self.time, "block timestamps strictly increase"
        ctx = BlockContext(
            self.height + 1, t, producer if producer is not None else WITNESS.address, self.tapos
        )
        self.ledger.begin_block(ctx)
        self._open = ctx
        return ctx

    def commit(self) -> BlockResult:
        """End the open block (opening an empty one if none is), store it, check the digest."""
        if self._open is None:
            self.begin()
        ctx = self._open
        assert ctx is not None
        result = self.ledger.end_block()
        self.kv.write(result.changes)
        assert recompute_digest(self.kv) == result.state_digest
        assert self.ledger.state_digest() == result.state_digest
        self._open = None
        self.height = ctx.height
        self.time = ctx.timestamp
        self.ids.append(sha256(b"test-block" + self.chain_id + ctx.height.to_bytes(8, "big")))
        self.digests.append(result.state_digest)
        self.results.append(result)
        return result

    def abort(self) -> None:
        assert self._open is not None
        self.ledger.abort_block()
        self._open = None

    def block(
        self, *txs: SignedTx, at: int | None = None, dt: int = 1, producer: bytes | None = None
    ) -> list[str | None]:
        """One whole block with these txs; returns each tx's rejection reason or None."""
        self.begin(at=at, dt=dt, producer=producer)
        reasons = [self.apply(tx) for tx in txs]
        self.commit()
        return reasons

    # --- txs ------------------------------------------------------------------------------

    def tx(
        self,
        signer: PrivateKey,
        op: list[Any],
        *,
        fee: int | None = None,
        expiration: int | None = None,
        ref: tuple[int, int] | None = None,
    ) -> SignedTx:
        """A signed tx referencing the head block, expiring 100 s after the next block,
        paying the chain's base_fee unless told otherwise."""
        if ref is None:
            ref = (self.height & 0xFFFF, int.from_bytes(self.ids[self.height][:4], "big"))
        return build_tx(
            signer,
            self.chain_id,
            op,
            ref_block_num=ref[0],
            ref_block_prefix=ref[1],
            expiration=expiration if expiration is not None else self.next_time + 100,
            fee=fee if fee is not None else self.genesis.params.base_fee,
        )

    def apply(self, tx: SignedTx) -> str | None:
        """Apply tx in the open block (opening one at the next slot if needed).

        Returns None if the tx was accepted, else the rejection reason.
        """
        if self._open is None:
            self.begin()
        try:
            self.ledger.apply_tx(tx)
        except Rejected as exc:
            return exc.reason
        return None

    def ok(self, signer: PrivateKey, op: list[Any], **kw: Any) -> SignedTx:
        """Build and apply a tx that must be accepted; returns it (its tx_id is a claim id)."""
        tx = self.tx(signer, op, **kw)
        reason = self.apply(tx)
        assert reason is None, f"{op[:1]} rejected: {reason}"
        return tx

    def reject(self, signer: PrivateKey, op: list[Any], **kw: Any) -> str | None:
        """Build and apply a tx; returns its rejection reason (None if it was accepted)."""
        return self.apply(self.tx(signer, op, **kw))

    # --- state reads (the overlay: sees the open block) -------------------------------------

    def get(self, state_key: bytes) -> Any:
        return self.ledger.state.get(state_key)

    def has_account(self, who: PrivateKey | bytes) -> bool:
        addr = who.address if isinstance(who, PrivateKey) else who
        return self.get(L.account_key(addr)) is not None

    def account(self, who: PrivateKey | bytes) -> list[Any]:
        """[balance, escrow, approvals, societies] (the account must exist)."""
        addr = who.address if isinstance(who, PrivateKey) else who
        rec = self.get(L.account_key(addr))
        assert rec is not None, "no such account"
        return list(rec)

    def balance(self, who: PrivateKey | bytes) -> int:
        return int(self.account(who)[L.BAL]) if self.has_account(who) else 0

    def escrow(self, who: PrivateKey | bytes) -> int:
        return int(self.account(who)[L.ESC]) if self.has_account(who) else 0

    def society(self, society: str = SOC) -> list[Any]:
        rec = self.get(L.society_key(society))
        assert rec is not None, f"no society {society}"
        return list(rec)

    def member(self, who: PrivateKey, society: str = SOC) -> list[Any]:
        rec = self.get(L.member_key(society, who.address))
        assert rec is not None, f"not a member of {society}"
        return list(rec)

    def claim(self, claim_id: bytes) -> list[Any]:
        rec = self.get(L.claim_key(claim_id))
        assert rec is not None
        return list(rec)

    def witness(self, who: PrivateKey | bytes) -> list[Any] | None:
        addr = who.address if isinstance(who, PrivateKey) else who
        rec = self.get(L.witness_key(addr))
        return None if rec is None else list(rec)

    def votes(self, who: PrivateKey | bytes) -> int:
        """A registered witness's live vote tally."""
        rec = self.witness(who)
        assert rec is not None, "not a witness"
        return int(rec[L.W_VOTES])

    def globals(self) -> list[Any]:
        return list(self.get(L.GLOBALS))

    def karma(self, who: PrivateKey, t: int, society: str = SOC) -> int:
        """A member's karma decayed to t (what a vote at t would weigh)."""
        m = self.member(who, society)
        r = self.society(society)[L.S_RULES]
        return L.decay(m[L.M_KARMA], m[L.M_KARMA_AT], t, r[L.R_DECAY_PERIOD], r[L.R_DECAY_PPM])

    def total_karma(self, t: int, society: str = SOC) -> int:
        s = self.society(society)
        r = s[L.S_RULES]
        return L.decay(s[L.S_KARMA], s[L.S_KARMA_AT], t, r[L.R_DECAY_PERIOD], r[L.R_DECAY_PPM])

    # --- common set-ups -------------------------------------------------------------------

    def society_with_members(
        self,
        pledges: Sequence[tuple[PrivateKey, int]],
        rules: Rules = RULES,
        society: str = SOC,
        founder: PrivateKey = ALICE,
    ) -> None:
        """Create a society, have every key in pledges join and pledge, in one block, then
        commit an empty block once the observation period is over."""
        self.begin()
        self.ok(founder, op_create(society, rules))
        for k, amount in pledges:
            self.ok(k, op_join(society, f"id-{k.address.hex()[:8]}"))
            if amount:
                self.ok(k, op_pledge(amount, society))
        self.commit()
        joined = self.time
        self.block(at=max(self.time + 1, joined + rules.observation_s))


# --- state-wide views -----------------------------------------------------------------------


def store_contents(kv: KVReader) -> dict[bytes, bytes]:
    """Every key and value in the store (for byte-for-byte comparisons)."""
    return dict(kv.iterate(b""))


def _records(kv: KVReader, prefix: bytes) -> list[tuple[bytes, Any]]:
    from consensus.codec import decode

    out: list[tuple[bytes, Any]] = []
    for k, v in kv.iterate(STATE_PREFIX + prefix):
        if k != STATE_PREFIX + DIGEST_KEY:
            out.append((k[len(STATE_PREFIX):], decode(v)))
    return out


def check_witness_votes(c: Chain) -> None:
    """Every witness's live vote tally equals the sum of its approvers' stake (balance +
    escrow), recomputed from scratch over the committed accounts."""
    expected: dict[bytes, int] = {}
    for _, acct in _records(c.kv, b"a"):
        for w in acct[L.APPROVALS]:
            expected[w] = expected.get(w, 0) + acct[L.BAL] + acct[L.ESC]
    for w in c.get(L.WITNESSES):
        assert c.votes(w) == expected.get(w, 0), w.hex()


def conservation_total(source: KVReader | Ledger | Chain) -> tuple[int, int]:
    """(balances + escrows + bonds held by open claims + burned, genesis supply), read from
    committed state. Also cross-checks that each account's escrow is the sum of its member
    escrows and each society's escrow_total the sum of its members'."""
    if isinstance(source, Chain):
        kv: KVReader = source.kv
    elif isinstance(source, Ledger):
        st = source.state
        accounts = list(st.iterate_committed(b"a"))
        societies = dict(st.iterate_committed(b"s"))
        members = list(st.iterate_committed(b"m"))
        claims = list(st.iterate_committed(b"c"))
        g = next(v for k, v in st.iterate_committed(L.GLOBALS) if k == L.GLOBALS)
        return _total(accounts, societies, members, claims, g)
    else:
        kv = source
    g = next(v for k, v in _records(kv, L.GLOBALS) if k == L.GLOBALS)
    return _total(
        _records(kv, b"a"), dict(_records(kv, b"s")), _records(kv, b"m"), _records(kv, b"c"), g
    )


def _total(
    accounts: list[tuple[bytes, Any]],
    societies: dict[bytes, Any],
    members: list[tuple[bytes, Any]],
    claims: list[tuple[bytes, Any]],
    g: list[Any],
) -> tuple[int, int]:
    """MUX only: user-issued assets are checked by ``asset_conservation``."""
    total = 0
    account_escrow: dict[bytes, int] = {}
    for k, acct in accounts:
        assert acct[L.BAL] >= 0 and acct[L.ESC] >= 0
        total += acct[L.BAL] + acct[L.ESC]
        account_escrow[k[1:]] = acct[L.ESC]
    member_escrow: dict[bytes, int] = {}
    society_escrow: dict[bytes, int] = {}
    society_charity: dict[bytes, int] = {}
    for k, m in members:
        soc, _, addr = k[1:].partition(b"\x00")
        society_escrow[soc] = society_escrow.get(soc, 0) + m[L.M_ESCROW]
        society_charity[soc] = society_charity.get(soc, 0) + m[L.M_CHARITY]
        if societies[b"s" + soc][L.S_RULES][L.R_ASSET] == L.MUX:
            # an account's escrow is its MUX stake in societies: escrow + charity escrow
            member_escrow[addr] = member_escrow.get(addr, 0) + m[L.M_ESCROW] + m[L.M_CHARITY]
    assert {a: e for a, e in account_escrow.items() if e} == {
        a: e for a, e in member_escrow.items() if e
    }
    for k, s in societies.items():
        assert s[L.S_ESCROW] == society_escrow.get(k[1:], 0)
        assert s[L.S_CHARITY] == society_charity.get(k[1:], 0)
    for _, c in claims:
        rules = societies[L.society_key(c[L.C_SOCIETY])][L.S_RULES]
        if c[L.C_STATUS] == L.CLAIM_OPEN and rules[L.R_ASSET] == L.MUX:
            total += rules[L.R_BOND]
    total += g[L.G_BURNED]
    return total, g[L.G_SUPPLY]


def asset_conservation(kv: KVReader) -> dict[str, tuple[int, int]]:
    """Per user-issued asset: (balances + escrows + charity escrows + bonds held by open
    claims + burned, supply), from committed state (11.1)."""
    assets = dict(_records(kv, b"A"))
    societies = dict(_records(kv, b"s"))
    held: dict[str, int] = {k[1:].decode(): a[L.A_BURNED] for k, a in assets.items()}
    for k, amount in _records(kv, b"b"):
        assert amount > 0  # a zero balance is no entry
        held[k[21:].decode()] += amount
    for k, m in _records(kv, b"m"):
        asset = societies[b"s" + k[1:].partition(b"\x00")[0]][L.S_RULES][L.R_ASSET]
        if asset != L.MUX:
            held[asset] += m[L.M_ESCROW] + m[L.M_CHARITY]
    for _, c in _records(kv, b"c"):
        rules = societies[L.society_key(c[L.C_SOCIETY])][L.S_RULES]
        if c[L.C_STATUS] == L.CLAIM_OPEN and rules[L.R_ASSET] != L.MUX:
            held[rules[L.R_ASSET]] += rules[L.R_BOND]
    return {k[1:].decode(): (held[k[1:].decode()], a[L.A_SUPPLY]) for k, a in assets.items()}
