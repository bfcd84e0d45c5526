"""Signing transactions for the devnet (protocol section 3) and waiting for them.

TaPoS: transactions reference the node's last FINAL block, not its head. A final block is
on every fork a node can switch to (fork choice never leaves it), so a tx signed during a
partition or a crash stays valid on whichever fork wins.
"""

from __future__ import annotations

import hashlib
import itertools
import threading
import time
from dataclasses import dataclass
from typing import Any

from consensus.crypto import AddressError, PrivateKey, address_from_text
from consensus.errors import Rejected
from consensus.tx import SignedTx, build_tx, tapos_of
from devnet.manifest import DevnetError, Manifest
from devnet.rpc import NodeRpc
from muxernode import ops

__all__ = ["Tapos", "TxSigner", "build_op", "fetch_tapos", "wait_status"]

LIFETIME = 1800  # seconds of validity given to each tx (max_tx_lifetime_s is 3600)


@dataclass(frozen=True)
class Tapos:
    ref_block_num: int
    ref_block_prefix: int
    head_time: int
    base_fee: int


def fetch_tapos(rpc: NodeRpc) -> Tapos:
    info = rpc.call("chain_info")
    num, prefix = tapos_of(int(info["final_height"]), bytes.fromhex(info["final_id"]))
    return Tapos(num, prefix, int(info["head_time"]), int(info["base_fee"]))


class TxSigner:
    """Signs ops for the devnet's accounts. Every tx gets a distinct expiration (a per-signer
    counter spread over 1000 seconds), so repeating the same op from the same account never
    produces a duplicate tx id while the TaPoS reference stays the same."""

    def __init__(self, manifest: Manifest) -> None:
        self.chain_id = bytes.fromhex(manifest.chain_id)
        self.keys = {a.name: PrivateKey(bytes.fromhex(a.secret)) for a in manifest.accounts}
        self._seq = itertools.count()
        self._lock = threading.Lock()

    def key(self, name: str) -> PrivateKey:
        try:
            return self.keys[name]
        except KeyError:
            raise DevnetError(f"no account {name!r} (accounts are a1..a{len(self.keys)})") \
                from None

    def sign(self, sender: str, op: list[Any], tapos: Tapos, *, fee: int | None = None) -> SignedTx:
        with self._lock:
            n = next(self._seq)
        expiration = tapos.head_time + LIFETIME + n % 1000
        return build_tx(self.key(sender), self.chain_id, op,
                        ref_block_num=tapos.ref_block_num,
                        ref_block_prefix=tapos.ref_block_prefix, expiration=expiration,
                        fee=tapos.base_fee if fee is None else fee)


# --- ops from plain values (scenario TOML, load) ---------------------------------------------


def _address(value: Any, manifest: Manifest) -> bytes:
    if isinstance(value, str) and not value.startswith("mx"):
        return address_from_text(manifest.account(value).address)
    try:
        return address_from_text(value)
    except AddressError as exc:
        raise DevnetError(f"bad address {value!r}: {exc}") from None


def _hex32(value: Any, what: str) -> bytes:
    try:
        b = bytes.fromhex(str(value))
    except ValueError:
        b = b""
    if len(b) != 32:
        raise DevnetError(f"{what} must be 64 hex digits, got {str(value)[:70]!r}")
    return b


def _int(fields: dict[str, Any], name: str, default: int | None = None) -> int:
    v = fields.get(name, default)
    if type(v) is not int:
        raise DevnetError(f"field {name!r} must be an integer, got {v!r}")
    return v


def _evidence(value: Any) -> bytes:
    """64 hex digits as they are, any other text hashed (SHA-256)."""
    try:
        evidence = bytes.fromhex(value) if isinstance(value, str) and len(value) == 64 else b""
    except ValueError:
        evidence = b""
    return evidence if len(evidence) == 32 else hashlib.sha256(str(value).encode()).digest()


def _symbol(fields: dict[str, Any]) -> str:
    # Upper-cased, so that a scenario can write a fresh symbol per run as "B${run}"
    # (${run} is lowercase hex).
    return str(fields.get("symbol", "")).upper()


def _rules(value: Any) -> list[Any]:
    """A list as it is, or a table of rule names over the CLI defaults; a table naming a
    version-2 rule (asset, charity_bp, charity_slots) gives all twelve."""
    if isinstance(value, list):
        return value
    if not isinstance(value, dict):
        raise DevnetError("rules must be a table of rule names or a list of 9 or 12 items")
    unknown = set(value) - set(ops.RULE_NAMES_V2)
    if unknown:
        raise DevnetError(f"unknown rule(s) {sorted(unknown)}; rules are "
                          f"{', '.join(ops.RULE_NAMES_V2)}")
    base = ops.DEFAULT_RULES.as_json()
    base.update(zip(ops.RULE_NAMES_V2[len(ops.RULE_NAMES):], ops.V1_RULE_DEFAULTS,
                    strict=True))
    base.update(value)
    if isinstance(base["asset"], str):
        base["asset"] = base["asset"].upper()
    names = ops.RULE_NAMES_V2 if set(value) - set(ops.RULE_NAMES) else ops.RULE_NAMES
    return [base[n] for n in names]


STANCES = {"approve": 1, "reject": -1, "withdraw": 0, 1: 1, -1: -1, 0: 0}


def build_op(name: str, fields: dict[str, Any], manifest: Manifest) -> list[Any]:
    """An op array from its name (section 3) and fields; statically checked by muxernode.ops.

    Conveniences: an address field takes an account name ("a2"); ``rules`` is a table of
    the rule names of sections 4.1 and 11.2 over the CLI defaults (or a full list);
    ``evidence`` is 64 hex digits or any text (then its SHA-256); ``stance`` is approve /
    reject / withdraw; ``symbol`` is upper-cased; ``proxy`` "" (or absent) clears."""
    f = fields
    if name == "transfer":
        op: list[Any] = [ops.OP_TRANSFER, _address(f.get("to"), manifest), _int(f, "amount"),
                         str(f.get("memo", ""))]
    elif name == "create_society":
        op = [ops.OP_CREATE_SOCIETY, str(f.get("society")), str(f.get("name", f.get("society"))),
              str(f.get("purpose", "")), _rules(f.get("rules", {}))]
    elif name == "join":
        op = [ops.OP_JOIN, str(f.get("society")), str(f.get("identity", ""))]
    elif name == "pledge":
        op = [ops.OP_PLEDGE, str(f.get("society")), _int(f, "amount")]
    elif name == "claim":
        op = [ops.OP_CLAIM, str(f.get("society")), _int(f, "amount"), _int(f, "karma"),
              str(f.get("subject", "")), str(f.get("details", "")),
              _evidence(f.get("evidence", ""))]
    elif name == "vote":
        stance = f.get("stance", "approve")
        if stance not in STANCES:
            raise DevnetError(f"stance must be approve, reject or withdraw, got {stance!r}")
        op = [ops.OP_VOTE, _hex32(f.get("claim"), "claim"), STANCES[stance]]
    elif name == "give":
        op = [ops.OP_GIVE, _hex32(f.get("claim"), "claim"), _int(f, "amount")]
    elif name == "register_witness":
        op = [ops.OP_REGISTER_WITNESS, _hex32(f.get("signing_key"), "signing_key"),
              str(f.get("url", ""))]
    elif name == "vote_witness":
        ws = f.get("witnesses", [])
        if not isinstance(ws, list):
            raise DevnetError("witnesses must be a list of addresses")
        op = [ops.OP_VOTE_WITNESS, [_address(w, manifest) for w in ws]]
    elif name == "create_asset":
        op = [ops.OP_CREATE_ASSET, _symbol(f), _int(f, "precision"), _int(f, "max_supply"),
              str(f.get("description", ""))]
    elif name in ("issue_asset", "transfer_asset"):
        code = ops.OP_ISSUE_ASSET if name == "issue_asset" else ops.OP_TRANSFER_ASSET
        op = [code, _symbol(f), _address(f.get("to"), manifest), _int(f, "amount"),
              str(f.get("memo", ""))]
    elif name == "standing_pledge":
        op = [ops.OP_STANDING_PLEDGE, str(f.get("society")), _int(f, "amount", 0),
              _int(f, "interval_s", 0)]
    elif name == "set_proxy":
        proxy = f.get("proxy") or ""
        op = [ops.OP_SET_PROXY, str(f.get("society")),
              _address(proxy, manifest) if proxy else b""]
    elif name == "charity_request":
        op = [ops.OP_CHARITY_REQUEST, str(f.get("society")), _int(f, "amount"),
              str(f.get("subject", "")), str(f.get("details", "")),
              _evidence(f.get("evidence", ""))]
    elif name == "withdraw_claim":
        op = [ops.OP_WITHDRAW_CLAIM, _hex32(f.get("claim"), "claim")]
    elif name == "amend_claim":
        op = [ops.OP_AMEND_CLAIM, _hex32(f.get("claim"), "claim"), str(f.get("details", "")),
              _evidence(f.get("evidence", ""))]
    elif name == "comment":
        op = [ops.OP_COMMENT, _hex32(f.get("claim"), "claim"), str(f.get("text", ""))]
    else:
        raise DevnetError(f"unknown op {name!r}; ops are {', '.join(ops.OP_NAMES.values())}")
    try:
        ops.decode_op(op)
    except Rejected as exc:
        raise DevnetError(f"{name}: {exc.message} ({exc.reason})") from None
    return op


# --- waiting ----------------------------------------------------------------------------------


WANTED = {"included": ("included", "final"), "final": ("final",)}


def wait_status(rpc: NodeRpc, tx_ids: list[str], target: str, timeout: float) -> dict[str, Any]:
    """Poll get_tx (in batches) until every tx reaches ``target`` (included or final);
    {tx_id: last answer}. Raises DevnetError naming the stragglers on timeout."""
    wanted = WANTED[target]
    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {}
    todo = list(tx_ids)
    while True:
        answers = rpc.batch([("get_tx", [t]) for t in todo])
        for t, a in zip(todo, answers, strict=True):
            last[t] = a if isinstance(a, dict) else {"status": f"error {a}"}
        todo = [t for t in todo if last[t].get("status") not in wanted]
        if not todo:
            return last
        if time.monotonic() >= deadline:
            late = ", ".join(f"{t[:16]}… {last[t].get('status')}" for t in todo[:5])
            raise DevnetError(f"{len(todo)} tx(s) not {target} within {timeout:g} s: {late}")
        time.sleep(0.2)
