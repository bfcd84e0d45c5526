"""The MUXER operations (protocol sections 3 and 11: ops 1-18) and society rules (4.1, 11.2).

An op travels as an array, opcode first. ``decode_op`` turns it into a typed, immutable
object after the static checks that need no chain state (lengths, bounds, the society id
alphabet, rule bounds); each failure raises ``Rejected`` with the reason code of section 9.
Stateful rules (membership, balances, karma, ...) belong to the ledger.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from typing import Any

from consensus.crypto import address_to_text
from consensus.errors import Rejected
from consensus.tx import SignedTx

__all__ = [
    "DEFAULT_RULES",
    "MUX",
    "OP_NAMES",
    "RULE_NAMES",
    "RULE_NAMES_V2",
    "AmendClaim",
    "CharityRequest",
    "Claim",
    "Comment",
    "CreateAsset",
    "CreateSociety",
    "Give",
    "IssueAsset",
    "Join",
    "Op",
    "Pledge",
    "RegisterWitness",
    "Rules",
    "SetProxy",
    "StandingPledge",
    "Transfer",
    "TransferAsset",
    "Vote",
    "VoteWitness",
    "WithdrawClaim",
    "decode_op",
    "op_of",
    "op_to_json",
]

MAX_AMOUNT = 2**63 - 1
MAX_TTL = 31_536_000
SOCIETY_ID = re.compile(r"[a-z0-9-]{3,32}")
MAX_APPROVALS = 30
# 11.1: 3-16 chars of A-Z 0-9 ., starting with a letter
SYMBOL = re.compile(r"[A-Z][A-Z0-9.]{2,15}")
MUX = "MUX"
MAX_PRECISION = 18
MAX_CHARITY_BP = 5000
MAX_CHARITY_SLOTS = 100
MAX_INTERVAL = 31_536_000

OP_TRANSFER = 1
OP_CREATE_SOCIETY = 2
OP_JOIN = 3
OP_PLEDGE = 4
OP_CLAIM = 5
OP_VOTE = 6
OP_GIVE = 7
OP_REGISTER_WITNESS = 8
OP_VOTE_WITNESS = 9
OP_CREATE_ASSET = 10
OP_ISSUE_ASSET = 11
OP_TRANSFER_ASSET = 12
OP_STANDING_PLEDGE = 13
OP_SET_PROXY = 14
OP_CHARITY_REQUEST = 15
OP_WITHDRAW_CLAIM = 16
OP_AMEND_CLAIM = 17
OP_COMMENT = 18

RULE_NAMES = (
    "decay_period_s",
    "decay_ppm",
    "approval_bp",
    "observation_s",
    "waiting_s",
    "claim_ttl_s",
    "benefit_ratio",
    "claim_bond",
    "min_pledge",
)
# 11.2: three optional items after the nine of 4.1 (all three or none)
RULE_NAMES_V2 = (*RULE_NAMES, "asset", "charity_bp", "charity_slots")
V1_RULE_DEFAULTS = (MUX, 0, 10)


@dataclass(frozen=True, slots=True)
class Rules:
    decay_period_s: int
    decay_ppm: int
    approval_bp: int
    observation_s: int
    waiting_s: int
    claim_ttl_s: int
    benefit_ratio: int
    claim_bond: int
    min_pledge: int
    asset: str = MUX
    charity_bp: int = 0
    charity_slots: int = 10
    # how many items the rules carried on the wire (9 or 12): a version-1 array and a
    # version-2 array with the default items are different bytes, so the op must re-encode
    # to the form it came in
    items: int = field(default=9, compare=False)

    def as_list(self) -> list[Any]:
        """The wire form: the nine of 4.1, or all twelve when they were given."""
        names = RULE_NAMES if self.items == len(RULE_NAMES) else RULE_NAMES_V2
        return [getattr(self, n) for n in names]

    def stored(self) -> list[Any]:
        """The state form: always all twelve (absent ones at their defaults)."""
        return [getattr(self, n) for n in RULE_NAMES_V2]

    def as_json(self) -> dict[str, Any]:
        """The op's rules as given (get_tx); get_society shows all twelve."""
        names = RULE_NAMES if self.items == len(RULE_NAMES) else RULE_NAMES_V2
        return {n: getattr(self, n) for n in names}

    @classmethod
    def from_obj(cls, obj: Any) -> Rules:
        if type(obj) is not list or len(obj) not in (len(RULE_NAMES), len(RULE_NAMES_V2)):
            raise Rejected(
                "bad_rules",
                f"rules are an array of {len(RULE_NAMES)} integers, optionally followed by "
                "asset, charity_bp and charity_slots",
            )
        for name, v in zip(RULE_NAMES, obj, strict=False):
            if type(v) is not int or not 0 <= v <= MAX_AMOUNT:
                raise Rejected("bad_rules", f"{name} must be an integer in [0, 2**63-1]")
        extra = tuple(obj[len(RULE_NAMES):]) or V1_RULE_DEFAULTS
        asset, charity_bp, charity_slots = extra
        if type(asset) is not str or (asset != MUX and SYMBOL.fullmatch(asset) is None):
            raise Rejected("bad_rules", "asset must be MUX or an asset symbol (3-16 of A-Z 0-9 .)")
        if type(charity_bp) is not int or not 0 <= charity_bp <= MAX_CHARITY_BP:
            raise Rejected("bad_rules", f"charity_bp must be in [0, {MAX_CHARITY_BP}]")
        if type(charity_slots) is not int or not 1 <= charity_slots <= MAX_CHARITY_SLOTS:
            raise Rejected("bad_rules", f"charity_slots must be in [1, {MAX_CHARITY_SLOTS}]")
        v = obj
        rules = cls(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], asset, charity_bp,
                    charity_slots, len(obj))
        rules.check()
        return rules

    def check(self) -> None:
        if self.decay_period_s < 1:
            raise Rejected("bad_rules", "decay_period_s must be at least 1")
        if not 0 <= self.decay_ppm < 1_000_000:
            raise Rejected("bad_rules", "decay_ppm must be in [0, 999999]")
        if not 1 <= self.approval_bp <= 10_000:
            raise Rejected("bad_rules", "approval_bp must be in [1, 10000]")
        if not 0 <= self.waiting_s < self.claim_ttl_s <= MAX_TTL:
            raise Rejected("bad_rules", "need 0 <= waiting_s < claim_ttl_s <= 31536000")
        if not 1 <= self.benefit_ratio <= 1000:
            raise Rejected("bad_rules", "benefit_ratio must be in [1, 1000]")
        if self.min_pledge < 1:
            raise Rejected("bad_rules", "min_pledge must be at least 1")


DEFAULT_RULES = Rules(86400, 3844, 300, 7776000, 259200, 2592000, 10, 10000000, 100000)


# --- field checks -----------------------------------------------------------------------


def _amount(v: Any, what: str = "amount") -> int:
    if type(v) is not int or not 0 < v <= MAX_AMOUNT:
        raise Rejected("bad_op", f"{what} must be an integer in [1, 2**63-1]")
    return v


def _text(v: Any, limit: int, what: str) -> str:
    if type(v) is not str:
        raise Rejected("bad_op", f"{what} must be a string")
    # Limits are in UTF-8 bytes. A char is at least one byte, so more chars than the limit
    # means more bytes too: reject those without encoding them.
    if len(v) > limit:
        raise Rejected("bad_op", f"{what} is longer than {limit} bytes")
    try:
        size = len(v.encode())
    except UnicodeEncodeError:  # lone surrogates: not text msgpack can carry
        raise Rejected("bad_op", f"{what} is not valid UTF-8 text") from None
    if size > limit:
        raise Rejected("bad_op", f"{what} is longer than {limit} bytes")
    return v


def _bin(v: Any, size: int, what: str) -> bytes:
    if type(v) is not bytes or len(v) != size:
        raise Rejected("bad_op", f"{what} must be {size} bytes")
    return v


def _society(v: Any) -> str:
    if type(v) is not str or SOCIETY_ID.fullmatch(v) is None:
        raise Rejected("bad_society_id", f"society id {str(v)[:40]!r} is not 3-32 of a-z 0-9 -")
    return v


# --- operations -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Transfer:
    to: bytes
    amount: int
    memo: str
    OPCODE = OP_TRANSFER


@dataclass(frozen=True, slots=True)
class CreateSociety:
    society: str
    name: str
    purpose: str
    rules: Rules
    OPCODE = OP_CREATE_SOCIETY


@dataclass(frozen=True, slots=True)
class Join:
    society: str
    identity: str
    OPCODE = OP_JOIN


@dataclass(frozen=True, slots=True)
class Pledge:
    society: str
    amount: int
    OPCODE = OP_PLEDGE


@dataclass(frozen=True, slots=True)
class Claim:
    society: str
    amount: int
    karma: int
    subject: str
    details: str
    evidence: bytes
    OPCODE = OP_CLAIM


@dataclass(frozen=True, slots=True)
class Vote:
    claim_id: bytes
    stance: int
    OPCODE = OP_VOTE


@dataclass(frozen=True, slots=True)
class Give:
    claim_id: bytes
    amount: int
    OPCODE = OP_GIVE


@dataclass(frozen=True, slots=True)
class RegisterWitness:
    signing_key: bytes
    url: str
    OPCODE = OP_REGISTER_WITNESS


@dataclass(frozen=True, slots=True)
class VoteWitness:
    witnesses: tuple[bytes, ...]
    OPCODE = OP_VOTE_WITNESS


@dataclass(frozen=True, slots=True)
class CreateAsset:
    symbol: str
    precision: int
    max_supply: int
    description: str
    OPCODE = OP_CREATE_ASSET


@dataclass(frozen=True, slots=True)
class IssueAsset:
    symbol: str
    to: bytes
    amount: int
    memo: str
    OPCODE = OP_ISSUE_ASSET


@dataclass(frozen=True, slots=True)
class TransferAsset:
    symbol: str
    to: bytes
    amount: int
    memo: str
    OPCODE = OP_TRANSFER_ASSET


@dataclass(frozen=True, slots=True)
class StandingPledge:
    society: str
    amount: int  # 0 with interval_s 0: cancel
    interval_s: int
    OPCODE = OP_STANDING_PLEDGE

    @property
    def cancels(self) -> bool:
        return self.amount == 0


@dataclass(frozen=True, slots=True)
class SetProxy:
    society: str
    proxy: bytes  # 20 bytes, or b"" to clear
    OPCODE = OP_SET_PROXY


@dataclass(frozen=True, slots=True)
class CharityRequest:
    society: str
    amount: int
    subject: str
    details: str
    evidence: bytes
    OPCODE = OP_CHARITY_REQUEST


@dataclass(frozen=True, slots=True)
class WithdrawClaim:
    claim_id: bytes
    OPCODE = OP_WITHDRAW_CLAIM


@dataclass(frozen=True, slots=True)
class AmendClaim:
    claim_id: bytes
    details: str
    evidence: bytes
    OPCODE = OP_AMEND_CLAIM


@dataclass(frozen=True, slots=True)
class Comment:
    claim_id: bytes
    text: str
    OPCODE = OP_COMMENT


Op = (
    Transfer | CreateSociety | Join | Pledge | Claim | Vote | Give | RegisterWitness
    | VoteWitness | CreateAsset | IssueAsset | TransferAsset | StandingPledge | SetProxy
    | CharityRequest | WithdrawClaim | AmendClaim | Comment
)

OP_NAMES = {
    OP_TRANSFER: "transfer",
    OP_CREATE_SOCIETY: "create_society",
    OP_JOIN: "join",
    OP_PLEDGE: "pledge",
    OP_CLAIM: "claim",
    OP_VOTE: "vote",
    OP_GIVE: "give",
    OP_REGISTER_WITNESS: "register_witness",
    OP_VOTE_WITNESS: "vote_witness",
    OP_CREATE_ASSET: "create_asset",
    OP_ISSUE_ASSET: "issue_asset",
    OP_TRANSFER_ASSET: "transfer_asset",
    OP_STANDING_PLEDGE: "standing_pledge",
    OP_SET_PROXY: "set_proxy",
    OP_CHARITY_REQUEST: "charity_request",
    OP_WITHDRAW_CLAIM: "withdraw_claim",
    OP_AMEND_CLAIM: "amend_claim",
    OP_COMMENT: "comment",
}
_ARITY = {
    OP_TRANSFER: 3,
    OP_CREATE_SOCIETY: 4,
    OP_JOIN: 2,
    OP_PLEDGE: 2,
    OP_CLAIM: 6,
    OP_VOTE: 2,
    OP_GIVE: 2,
    OP_REGISTER_WITNESS: 2,
    OP_VOTE_WITNESS: 1,
    OP_CREATE_ASSET: 4,
    OP_ISSUE_ASSET: 4,
    OP_TRANSFER_ASSET: 4,
    OP_STANDING_PLEDGE: 3,
    OP_SET_PROXY: 2,
    OP_CHARITY_REQUEST: 5,
    OP_WITHDRAW_CLAIM: 1,
    OP_AMEND_CLAIM: 3,
    OP_COMMENT: 2,
}


def _symbol(v: Any) -> str:
    """An asset symbol field of issue/transfer: any str (an ill-formed one names no asset,
    which the ledger answers ``unknown_asset``); another type is ``bad_op``."""
    if type(v) is not str:
        raise Rejected("bad_op", "symbol must be a string")
    return v


def _new_symbol(v: Any) -> str:
    if type(v) is not str:
        raise Rejected("bad_op", "symbol must be a string")
    if v == MUX or SYMBOL.fullmatch(v) is None:
        raise Rejected(
            "bad_symbol",
            f"symbol {v[:20]!r} must be 3-16 of A-Z 0-9 ., start with a letter, and not be MUX",
        )
    return v


def _int_in(v: Any, lo: int, hi: int, what: str) -> int:
    if type(v) is not int or not lo <= v <= hi:
        raise Rejected("bad_op", f"{what} must be an integer in [{lo}, {hi}]")
    return v


def _decode_v2(code: int, f: list[Any]) -> Op:
    if code == OP_CREATE_ASSET:
        return CreateAsset(
            _new_symbol(f[1]),
            _int_in(f[2], 0, MAX_PRECISION, "precision"),
            _amount(f[3], "max_supply"),
            _text(f[4], 1024, "description"),
        )
    if code in (OP_ISSUE_ASSET, OP_TRANSFER_ASSET):
        cls = IssueAsset if code == OP_ISSUE_ASSET else TransferAsset
        return cls(_symbol(f[1]), _bin(f[2], 20, "to"), _amount(f[3]), _text(f[4], 256, "memo"))
    if code == OP_STANDING_PLEDGE:
        amount = _int_in(f[2], 0, MAX_AMOUNT, "amount")
        interval = _int_in(f[3], 0, MAX_INTERVAL, "interval_s")
        if (amount == 0) != (interval == 0):
            raise Rejected(
                "bad_op", "amount and interval_s are both 0 (cancel) or both positive"
            )
        return StandingPledge(_society(f[1]), amount, interval)
    if code == OP_SET_PROXY:
        proxy = f[2]
        if type(proxy) is not bytes or len(proxy) not in (0, 20):
            raise Rejected("bad_op", "proxy must be 20 bytes, or empty to clear")
        return SetProxy(_society(f[1]), proxy)
    if code == OP_CHARITY_REQUEST:
        return CharityRequest(
            _society(f[1]),
            _amount(f[2]),
            _text(f[3], 80, "subject"),
            _text(f[4], 4096, "details"),
            _bin(f[5], 32, "evidence"),
        )
    if code == OP_WITHDRAW_CLAIM:
        return WithdrawClaim(_bin(f[1], 32, "claim_id"))
    if code == OP_AMEND_CLAIM:
        return AmendClaim(
            _bin(f[1], 32, "claim_id"), _text(f[2], 4096, "details"), _bin(f[3], 32, "evidence")
        )
    # OP_COMMENT
    text = _text(f[2], 1024, "text")
    if not text:
        raise Rejected("bad_op", "text must not be empty")
    return Comment(_bin(f[1], 32, "claim_id"), text)


def decode_op(obj: Any) -> Op:
    """Statically validate an op array and return its typed form (raises Rejected)."""
    if type(obj) is not list or not obj or type(obj[0]) is not int:
        raise Rejected("bad_op", "an op is an array whose first item is an opcode")
    code = obj[0]
    arity = _ARITY.get(code)
    if arity is None:
        raise Rejected("bad_op", f"unknown opcode {code}")
    if len(obj) != arity + 1:
        raise Rejected("bad_op", f"{OP_NAMES[code]} takes {arity} fields, got {len(obj) - 1}")
    f = obj
    if code >= OP_CREATE_ASSET:
        return _decode_v2(code, f)
    if code == OP_TRANSFER:
        return Transfer(_bin(f[1], 20, "to"), _amount(f[2]), _text(f[3], 256, "memo"))
    if code == OP_PLEDGE:
        return Pledge(_society(f[1]), _amount(f[2]))
    if code == OP_VOTE:
        if type(f[2]) is not int or f[2] not in (-1, 0, 1):
            raise Rejected("bad_op", "stance must be -1 (reject), 0 (withdraw) or 1 (approve)")
        return Vote(_bin(f[1], 32, "claim_id"), f[2])
    if code == OP_GIVE:
        return Give(_bin(f[1], 32, "claim_id"), _amount(f[2]))
    if code == OP_JOIN:
        return Join(_society(f[1]), _text(f[2], 256, "identity"))
    if code == OP_CLAIM:
        return Claim(
            _society(f[1]),
            _amount(f[2]),
            _amount(f[3], "karma"),
            _text(f[4], 80, "subject"),
            _text(f[5], 4096, "details"),
            _bin(f[6], 32, "evidence"),
        )
    if code == OP_CREATE_SOCIETY:
        return CreateSociety(
            _society(f[1]),
            _text(f[2], 64, "name"),
            _text(f[3], 1024, "purpose"),
            Rules.from_obj(f[4]),
        )
    if code == OP_REGISTER_WITNESS:
        return RegisterWitness(_bin(f[1], 32, "signing_key"), _text(f[2], 256, "url"))
    # OP_VOTE_WITNESS
    ws = f[1]
    if type(ws) is not list or len(ws) > MAX_APPROVALS:
        raise Rejected("bad_op", f"witnesses must be an array of at most {MAX_APPROVALS}")
    addrs = tuple(_bin(w, 20, "witness address") for w in ws)
    if len(set(addrs)) != len(addrs):
        raise Rejected("bad_op", "witness approvals must be distinct")
    return VoteWitness(addrs)


def op_of(tx: SignedTx) -> Op:
    """``decode_op(tx.op)``, decoded once per tx object (ops are immutable)."""
    op = tx.app_op
    if op is None:
        op = tx.app_op = decode_op(tx.op)
    return op  # type: ignore[no-any-return]


def encode_op(op: Op) -> list[Any]:
    """The array form of a typed op (inverse of decode_op)."""
    out: list[Any] = [op.OPCODE]
    for fld in fields(op):
        v = getattr(op, fld.name)
        if isinstance(v, Rules):
            v = v.as_list()
        elif isinstance(v, tuple):
            v = list(v)
        out.append(v)
    return out


_ADDRESS_FIELDS = {"to", "proxy"}


def op_to_json(op: Op) -> dict[str, Any]:
    """The RPC form: {"type": name, field: value}; bin in hex, addresses in mx form."""
    out: dict[str, Any] = {"type": OP_NAMES[op.OPCODE]}
    for fld in fields(op):
        v = getattr(op, fld.name)
        if isinstance(v, Rules):
            v = v.as_json()
        elif isinstance(v, tuple):
            v = [address_to_text(a) for a in v]
        elif isinstance(v, bytes):
            # set_proxy's empty proxy (clear) is null
            v = (address_to_text(v) if v else None) if fld.name in _ADDRESS_FIELDS else v.hex()
        out[fld.name] = v
    return out
