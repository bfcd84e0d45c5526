"""Read-only views of the ledger state in the JSON shapes of protocol section 9.

Every function here is pure: it reads a state (a ``State`` over a store or a snapshot, or a
``Ledger``, whose state is used) and returns plain JSON values; it writes nothing, not even
a decayed karma value (section 4.2: a read reports the value decayed to the head's time).

Conventions: byte strings are lowercase hex, addresses are ``mx`` text, amounts and karma are
integers in units. An unknown society, member or claim gives ``None`` (the RPC turns that
into its not-found error); an unknown account is a zero account, because every valid address
has a balance, possibly zero.

Choices the protocol leaves open (also in docs/rpc.md):

- ``claim_view``: ``approved`` of an OPEN claim is ``is_approved`` at the head's time; of a
  CLOSED claim it is its outcome (``outcome == "approved"``), because the tallies of a closed
  claim are frozen while the society's total karma keeps decaying, and a re-evaluation could
  contradict the outcome the chain recorded.
- ``list_claims`` returns claim summaries: the claim view without ``details`` and
  ``evidence`` (up to 4 KiB per claim); ``get_claim`` gives the rest.
- ``list_members`` (not in the protocol: the web app's member list and proxy choice) pages
  a society's members in address order, each a part of the member view.
- ``list_witnesses``: ``last_slot`` is 0 and ``missed`` is 0 for a witness the node has no
  production statistics for (slot 0 is genesis: no witness ever produces it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from consensus.codec import decode_trusted
from consensus.crypto import ADDRESS_LEN, address_to_text
from muxernode import ledger as L
from muxernode.ledger import Ledger, decay, is_approved
from muxernode.ops import RULE_NAMES_V2
from muxernode.state import State

__all__ = [
    "StateSource",
    "account_view",
    "asset_view",
    "claim_view",
    "comment_count",
    "list_assets",
    "list_claims",
    "list_comments",
    "list_members",
    "list_votes",
    "list_witnesses",
    "member_view",
    "society_view",
    "standing_pledge_view",
]

StateSource = State | Ledger

_OUTCOMES = {L.CLAIM_APPROVED: "approved", L.CLAIM_REJECTED: "rejected",
             L.CLAIM_WITHDRAWN: "withdrawn"}
_KINDS = {L.KIND_CLAIM: "claim", L.KIND_CHARITY: "charity"}
# member view fields that list_members keeps in its items
_MEMBER_ITEM = ("address", "identity", "joined_at", "karma", "escrow", "charity_escrow",
                "proxy", "delegators")
# claim view fields that list_claims leaves out of its summaries
_SUMMARY_OMITS = ("details", "evidence")


def _state(source: StateSource) -> State:
    return source.state if isinstance(source, Ledger) else source


def _decayed(value: int, stamped_at: int, t: int, rules: list[int]) -> int:
    return decay(value, stamped_at, t, rules[L.R_DECAY_PERIOD], rules[L.R_DECAY_PPM])


def account_view(source: StateSource, address: bytes, head_time: int) -> dict[str, Any]:
    """{address, balance, stake, societies, witness?}; a zero account if none is stored.

    ``head_time`` is unused (accounts hold no karma) but kept for a uniform signature."""
    del head_time
    st = _state(source)
    acct = st.get(L.account_key(address))
    balance, escrow, societies = (0, 0, []) if acct is None else (
        acct[L.BAL], acct[L.ESC], acct[L.SOCIETIES]
    )
    assets = {L.MUX: balance}
    prefix = L.asset_balance_key(address, "")
    for key, amount in st.iterate_committed(prefix):
        if amount:
            assets[key[len(prefix):].decode()] = amount
    out: dict[str, Any] = {
        "address": address_to_text(address),
        "balance": balance,
        "stake": balance + escrow,
        "societies": list(societies),
        "assets": assets,
    }
    w = st.get(L.witness_key(address))
    if w is not None:
        out["witness"] = {"signing_key": bytes(w[L.W_KEY]).hex(), "url": w[L.W_URL],
                          "votes": w[L.W_VOTES]}
    return out


def society_view(source: StateSource, society: str, head_time: int) -> dict[str, Any] | None:
    """{society, name, purpose, rules, creator, members, total_karma, escrow_total,
    open_claims}, total_karma decayed to head_time; None for an unknown society."""
    rec = _state(source).get(L.society_key(society))
    if rec is None:
        return None
    rules = rec[L.S_RULES]
    return {
        "society": society,
        "name": rec[L.S_NAME],
        "purpose": rec[L.S_PURPOSE],
        "rules": dict(zip(RULE_NAMES_V2, rules, strict=True)),
        "creator": address_to_text(rec[L.S_CREATOR]),
        "members": rec[L.S_MEMBERS],
        "total_karma": _decayed(rec[L.S_KARMA], rec[L.S_KARMA_AT], head_time, rules),
        "escrow_total": rec[L.S_ESCROW],
        "charity_escrow_total": rec[L.S_CHARITY],
        "open_claims": rec[L.S_OPEN],
    }


def member_view(
    source: StateSource, society: str, address: bytes, head_time: int
) -> dict[str, Any] | None:
    """{society, address, identity, joined_at, escrow, karma, pledged_total, given_total,
    open_claim?}, karma decayed to head_time; None unless address is a member of society."""
    st = _state(source)
    m = st.get(L.member_key(society, address))
    if m is None:
        return None
    soc = st.get(L.society_key(society))
    rules = soc[L.S_RULES]
    out: dict[str, Any] = {
        "society": society,
        "address": address_to_text(address),
        "identity": m[L.M_IDENTITY],
        "joined_at": m[L.M_JOINED],
        "escrow": m[L.M_ESCROW],
        "karma": _decayed(m[L.M_KARMA], m[L.M_KARMA_AT], head_time, rules),
        "pledged_total": m[L.M_PLEDGED],
        "given_total": m[L.M_GIVEN],
        "charity_escrow": m[L.M_CHARITY],
        "proxy": address_to_text(m[L.M_PROXY]) if m[L.M_PROXY] else None,
        "delegators": m[L.M_DELEGATORS],
    }
    if m[L.M_OPEN]:
        out["open_claim"] = bytes(m[L.M_OPEN]).hex()
    return out


def list_members(
    source: StateSource, society: str, head_time: int, after: bytes | None, limit: int
) -> dict[str, Any] | None:
    """list_members (muxernode's choice): {items: [{address, identity, joined_at, karma,
    escrow, charity_escrow, proxy, delegators}], next}, in address order (the order of the
    state's member keys); karma decayed to head_time as in member_view. ``after`` is the
    cursor a previous page handed out (the last item's address), ``next`` the cursor of the
    following page (its last address's hex) or None. None for an unknown society.

    The store iterates a prefix forward from its start, so a page walks (and skips) the
    member records up to ``after``."""
    st = _state(source)
    if st.get(L.society_key(society)) is None:
        return None
    prefix = L.member_key(society, b"")
    items: list[dict[str, Any]] = []
    more = False
    last = b""
    for key, _ in st.iterate_committed(prefix):
        address = key[len(prefix):]
        if len(address) != ADDRESS_LEN or (after is not None and address <= after):
            continue
        if len(items) == limit:
            more = True
            break
        view = member_view(st, society, address, head_time)
        if view is None:  # the key was just listed; never happens
            continue
        items.append({name: view[name] for name in _MEMBER_ITEM})
        last = address
    return {"items": items, "next": last.hex() if more else None}


def _claim_json(
    st: State, claim_id: bytes, c: list[Any], society: list[Any], head_time: int
) -> dict[str, Any]:
    status = c[L.C_STATUS]
    is_open = status == L.CLAIM_OPEN
    out: dict[str, Any] = {
        "claim_id": claim_id.hex(),
        "kind": _KINDS[c[L.C_KIND]],
        "society": c[L.C_SOCIETY],
        "claimant": address_to_text(c[L.C_CLAIMANT]),
        "amount": c[L.C_AMOUNT],
        "karma": c[L.C_KARMA],
        "limit": c[L.C_LIMIT],
        "received": c[L.C_RECEIVED],
        "approve": c[L.C_APPROVE],
        "reject": c[L.C_REJECT],
        "approved": is_approved(c, society, head_time) if is_open
        else status == L.CLAIM_APPROVED,
        "status": "open" if is_open else "closed",
    }
    if not is_open:
        out["outcome"] = _OUTCOMES[status]
    out.update({
        "opened_at": c[L.C_OPENED],
        "gives_from": c[L.C_GIVES_FROM],
        "closes_at": c[L.C_CLOSES],
        "subject": c[L.C_SUBJECT],
        "details": c[L.C_DETAILS],
        "evidence": bytes(c[L.C_EVIDENCE]).hex(),
        "voters": c[L.C_VOTERS],
        "proxied": c[L.C_PROXIED],
        "comments": comment_count(st, claim_id),
    })
    return out


def claim_view(source: StateSource, claim_id: bytes, head_time: int) -> dict[str, Any] | None:
    """The claim in the shape of section 9 (get_claim); None for an unknown claim id."""
    st = _state(source)
    c = st.get(L.claim_key(claim_id))
    if c is None:
        return None
    return _claim_json(st, claim_id, c, st.get(L.society_key(c[L.C_SOCIETY])), head_time)


def list_claims(
    source: StateSource, society: str, head_time: int, limit: int = 100
) -> list[dict[str, Any]] | None:
    """Summaries of the society's claims, newest first (by opened_at, then claim id, both
    descending), at most ``limit``; None for an unknown society.

    Reads the committed ``l`` index. The store iterates forward only, so this walks all the
    society's index entries (32-byte ids, cheap) and keeps the last ``limit``."""
    st = _state(source)
    soc = st.get(L.society_key(society))
    if soc is None:
        return None
    prefix = b"l" + society.encode() + b"\x00"
    ids = [key[len(prefix) + 8:] for key, _ in st.iterate_committed(prefix)]
    out: list[dict[str, Any]] = []
    for claim_id in reversed(ids[-limit:] if limit > 0 else []):
        c = st.get(L.claim_key(claim_id))
        if c is None:  # the index is written with the claim; never happens
            continue
        summary = _claim_json(st, claim_id, c, soc, head_time)
        for name in _SUMMARY_OMITS:
            del summary[name]
        out.append(summary)
    return out


def list_witnesses(
    source: StateSource,
    active: set[bytes],
    stats: Mapping[bytes, tuple[int, int]],
) -> list[dict[str, Any]]:
    """Every registered witness in registration order: {address, url, votes, active,
    signing_key, last_slot, missed}. ``active`` is the current active set; ``stats`` maps an
    address to (last slot it produced, slots it missed), as far as this node knows."""
    st = _state(source)
    out: list[dict[str, Any]] = []
    for address in st.get(L.WITNESSES) or []:
        w = st.get(L.witness_key(address))
        last_slot, missed = stats.get(address, (0, 0))
        out.append({
            "address": address_to_text(address),
            "url": w[L.W_URL],
            "votes": w[L.W_VOTES],
            "active": address in active,
            "signing_key": bytes(w[L.W_KEY]).hex(),
            "last_slot": last_slot,
            "missed": missed,
        })
    return out


# --- version 2 (section 11.8) ------------------------------------------------------------


def _asset_json(symbol: str, a: list[Any]) -> dict[str, Any]:
    return {
        "symbol": symbol,
        "issuer": address_to_text(a[L.A_ISSUER]),
        "precision": a[L.A_PRECISION],
        "max_supply": a[L.A_MAX],
        "supply": a[L.A_SUPPLY],
        "description": a[L.A_DESCRIPTION],
        "burned": a[L.A_BURNED],
    }


def asset_view(source: StateSource, symbol: str) -> dict[str, Any] | None:
    """get_asset: None for MUX (not an asset of 11.1) and for an unknown symbol."""
    if symbol == L.MUX:
        return None
    a = _state(source).get(L.asset_key(symbol))
    return None if a is None else _asset_json(symbol, a)


def list_assets(source: StateSource) -> list[dict[str, Any]]:
    """Every user-issued asset, by symbol (key order is symbol order)."""
    return [_asset_json(key[1:].decode(), a)
            for key, a in _state(source).iterate_committed(b"A")]


def standing_pledge_view(
    source: StateSource, society: str, address: bytes
) -> dict[str, Any] | None:
    rec = _state(source).get(L.standing_key(society, address))
    if rec is None:
        return None
    return {
        "society": society,
        "address": address_to_text(address),
        "amount": rec[L.P_AMOUNT],
        "interval_s": rec[L.P_INTERVAL],
        "next_at": rec[L.P_NEXT],
        "executed": rec[L.P_EXECUTED],
        "missed": rec[L.P_MISSED],
        "missed_in_row": rec[L.P_MISSED_IN_ROW],
    }


def list_votes(source: StateSource, claim_id: bytes) -> list[dict[str, Any]] | None:
    """One item per member whose karma counts on the claim: own votes (a proxy's carries
    its own karma, possibly 0) and each delegator counted through a proxy, with ``via``.
    Opt-outs (a member with a proxy who voted 0) count nothing and are not listed. None
    for an unknown claim. In key order (by voter address)."""
    st = _state(source)
    if st.get(L.claim_key(claim_id)) is None:
        return None
    prefix = b"v" + claim_id
    out: list[tuple[bytes, int, int, bytes | None]] = []
    for key, rec in st.iterate_committed(prefix):
        if rec[L.V_STANCE] == 0:
            continue
        voter = bytes(key[len(prefix):])
        out.append((voter, rec[L.V_STANCE], rec[L.V_WEIGHT], None))
        # the delegators counted through this vote live in its record (6.3)
        out.extend((bytes(d), rec[L.V_STANCE], w, voter) for d, w in rec[L.V_COUNTED])
    out.sort(key=lambda item: item[0])
    return [
        {
            "voter": address_to_text(voter),
            "stance": stance,
            "weight": weight,
            "via": address_to_text(via) if via else None,
        }
        for voter, stance, weight, via in out
    ]


def comment_count(source: StateSource, claim_id: bytes) -> int:
    return sum(1 for _ in _state(source).iterate_store(L.COMMENT_PREFIX + claim_id))


def list_comments(
    source: StateSource, claim_id: bytes, after: bytes | None, limit: int
) -> dict[str, Any] | None:
    """11.7: {items: [{tx_id, height, time, author, text}], next}, oldest first; ``after``
    is the cursor a previous page handed out (the last item's index key suffix), ``next``
    the cursor of the following page or None. None for an unknown claim."""
    st = _state(source)
    if st.get(L.claim_key(claim_id)) is None:
        return None
    prefix = L.COMMENT_PREFIX + claim_id
    items: list[dict[str, Any]] = []
    last: bytes | None = None  # the index key suffix of the last item taken
    next_cursor = None
    for key, raw in st.iterate_store(prefix):
        suffix = key[len(prefix):]
        if after is not None and suffix <= after:
            continue
        if len(items) == limit:
            next_cursor = None if last is None else last.hex()
            break
        tx_id, time, author, text = decode_trusted(raw)
        items.append({"tx_id": bytes(tx_id).hex(), "height": int.from_bytes(suffix[:8], "big"),
                      "time": time, "author": address_to_text(author), "text": text})
        last = suffix
    return {"items": items, "next": next_cursor}
