"""`muxer`, the command-line wallet: keys, transactions and queries against a node's RPC.

    muxer [--keystore DIR] [--rpc URL] [--json] COMMAND ...

Keys live in an encrypted keystore (muxernode.keystore); a FROM argument names one of them.
Everything else goes through the node's JSON-RPC (protocol section 9).

How a transaction is made (protocol section 3): ``chain_info`` gives the chain id, the head
(for TaPoS, ``consensus.tx.tapos_of``), the head's time (expiration = head_time +
--expires-in) and base_fee (the default fee); the op comes from muxernode.ops, is checked
with the same static rules the node applies (``decode_op``) before anything is signed, and
the signed bytes go to ``submit_tx`` in hex. With --wait the wallet polls ``get_tx`` until
the tx is included or final, or --timeout passes, or the chain passes its expiration.

Argument checks happen before the passphrase prompt and before any network call, so a
typo never costs a passphrase. Exit codes: 0 done; 1 the operation failed (a rejected
tx, an unreachable node, a wrong passphrase, not found, a timeout); 2 bad usage or input.

Node administration (``muxer admin --data-dir DIR ...``: add, drop, ban and unban peers)
sends the node's admin token, read from ``DIR/rpc.token``; without --rpc the URL comes from
``DIR/rpc.addr`` (written by the running node). Read-only ``admin peers`` and ``admin
evidence`` need no token and are not sent one.

Two names carry two forms each: ``society create ...`` makes a society and ``society ID``
shows one (``society show ID``); ``claim ID`` (one argument: an id or a prefix of one)
shows a claim (``claim show ID``) and ``claim FROM SOCIETY AMOUNT ...`` opens one (``claim
open ...``). An explicit subcommand name wins, so a key named ``open`` or ``show`` opens a
claim with ``claim open open ...``.

Units (protocol sections 1 and 11): the chain and --json speak integer units; the wallet
reads and writes whole units of the asset with its precision (``get_asset``; MUX is 5).
Fees and balances are MUX; a society's pledges, escrow, bonds, claims and gifts are in its
asset (``get_society`` rules.asset); karma counts in the same units as that asset, so it is
typed and shown with that precision (without a symbol). The node's rejection messages use
the same whole units.

Claim ids: 64 hex digits, or a unique prefix of at least 4, resolved as git resolves a
commit prefix against the claims ``list_claims`` gives for the societies the keystore's
keys belong to (``get_account``), and every society ``list_societies`` lists. Tables keep
10 digits of an id, whole, and fit an 80-column terminal (only text columns wrap).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import textwrap
import time
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import click
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from consensus.crypto import AddressError, address_from_text, address_to_text
from consensus.errors import Rejected
from consensus.tx import build_tx, tapos_of
from muxernode import ops
from muxernode.amounts import DECIMALS, format_mux, format_units, parse_mux, parse_units
from muxernode.keystore import (
    BadName,
    BadSeed,
    KeyInfo,
    Keystore,
    KeystoreError,
    check_name,
    default_keystore_dir,
    parse_seed_hex,
    read_passphrase,
    read_seed_hex,
)
from muxernode.rpc_client import (
    DEFAULT_RPC_URL,
    ENV_RPC,
    RpcClient,
    RpcClientError,
    RpcError,
    RpcProtocolError,
    resolve_rpc_url,
)

__all__ = ["AMOUNT_FIELDS", "KARMA_FIELDS", "REASON_TEXT", "main"]

ENV_KEYSTORE = "MUXER_KEYSTORE"
RPC_REJECTED = -32000
RPC_NOT_FOUND = -32001
RPC_INVALID_PARAMS = -32602
RPC_METHOD_NOT_FOUND = -32601
RPC_UNAUTHORIZED = -32003
TOKEN_FILE = "rpc.token"  # muxernode.rpc.TOKEN_FILE (not imported: the wallet needs no server)
RPC_ADDR_FILE = "rpc.addr"
EXIT_FAILED = 1
EXIT_USAGE = 2

# One sentence per reason code of protocol section 9, written for the person at the
# keyboard (consensus.errors.REASONS words them for the protocol); a test checks that the
# two lists name the same codes.
REASON_TEXT: dict[str, str] = {
    "bad_encoding": "the node could not decode the transaction (is the wallet older or newer "
    "than the node?)",
    "too_large": "the transaction is larger than the chain allows; shorten the text fields",
    "bad_signature": "the signature does not verify: the node may be on another chain",
    "expired": "the transaction expired before it could be included; send it again",
    "expiration_too_far": "the expiration is further ahead than the chain allows; lower "
    "--expires-in",
    "unknown_ref_block": "the block the transaction refers to (TaPoS) is not on the node's "
    "chain; retry once the node is in sync",
    "duplicate": "this exact transaction is already on the chain",
    "fee_too_low": "the fee is below the chain's base fee; raise --fee",
    "insufficient_balance": "the sender's balance cannot cover amount plus fee (the fee is MUX; "
    "an amount or bond is in its asset)",
    "unknown_society": "there is no society with this id",
    "society_exists": "a society with this id already exists; pick another id",
    "bad_society_id": "a society id is 3-32 characters of a-z, 0-9 and '-'",
    "bad_rules": "the society rules are out of bounds (see protocol section 4.1)",
    "not_member": "the sender is not a member of this society; join it first",
    "already_member": "the sender is already a member of this society",
    "observation_period": "the member is still in the society's observation period and "
    "cannot claim yet",
    "open_claim_exists": "the member already has an open claim in this society",
    "insufficient_karma": "the member does not have that much karma in this society",
    "unknown_claim": "there is no claim with this id",
    "claim_closed": "the claim is closed and takes no more votes or gifts",
    "self_vote": "a claimant cannot vote on or give to their own claim",
    "no_karma": "the voter has no karma in this society; pledge first to earn some",
    "waiting_period": "the claim does not take gifts now (still in its waiting period, or "
    "already past its closing time)",
    "not_approved": "the claim is not approved, so it cannot receive gifts yet",
    "insufficient_escrow": "the giver's escrow in this society cannot cover the amount; "
    "pledge more first",
    "over_limit": "the gift would take the claim over its limit",
    "unknown_witness": "that address is not a registered witness",
    "bad_op": "the node considers the operation malformed",
    "mempool_full": "the node's mempool is full; retry later or raise --fee",
    # version 2 (protocol section 11)
    "asset_exists": "an asset with this symbol already exists; pick another symbol",
    "bad_symbol": "an asset symbol is 3-16 characters of A-Z, 0-9 and '.', starting with a "
    "letter, and not MUX",
    "unknown_asset": "there is no asset with this symbol (MUX moves with muxer transfer)",
    "not_issuer": "only the asset's issuer can issue it",
    "over_supply": "issuing that much would pass the asset's max supply",
    "no_standing_pledge": "there is no standing pledge to stop",
    "proxy_chain": "proxies cannot be chained: the proxy has a proxy, or the sender is "
    "someone's proxy",
    "too_many_delegators": "that proxy already votes for as many members as it may (1000)",
    "not_in_charity_slots": "the charity request is approved but not among the ones that "
    "may receive gifts now (the society's charity slots)",
    "not_claimant": "only the claimant can withdraw or amend a claim",
    "has_votes": "a claim cannot be amended once it has votes",
}

# JSON fields that hold amounts in units (--json shows them raw). On screen they are whole
# units of their asset with its precision and symbol: balances, stakes and fees are always
# MUX (protocol section 11.2); a society's amounts are in the society's asset; an asset's
# supply in that asset. Karma counts in the same units as the society's asset (a pledge of
# 10 MUX earns 5 karma), so karma and vote tallies are shown with its precision, unitless.
MUX_FIELDS = frozenset({"balance", "stake", "fee", "base_fee"})
ASSET_FIELDS = frozenset({
    "amount", "escrow", "escrow_total", "charity_escrow", "charity_escrow_total",
    "pledged_total", "given_total", "received", "limit", "claim_bond", "min_pledge",
    "supply", "max_supply", "burned",
})
AMOUNT_FIELDS = MUX_FIELDS | ASSET_FIELDS
KARMA_FIELDS = frozenset({"karma", "total_karma", "approve", "reject", "proxied", "weight"})
TIME_FIELDS = frozenset({
    "head_time", "next_slot_time", "timestamp", "joined_at", "opened_at", "gives_from",
    "closes_at", "expiration", "next_at", "time", "created_at",
})
SHORT_ID = 10  # hex digits of an id in a table, as git's short commit ids
MIN_PREFIX = 4  # hex digits a claim id prefix needs
_PREFIX_PAGES = 50  # list_societies pages read at most while resolving a prefix
_STANCES = {"approve": 1, "reject": -1, "withdraw": 0}


class WalletError(click.ClickException):
    """A failure reported in one clear message (exit code 1); ``details`` go into the
    --json form of the error."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.details = details


class BadInput(WalletError):
    """Input that cannot work, found before anything is signed or sent (exit code 2)."""

    exit_code = EXIT_USAGE


# --- units --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Unit:
    """An asset as people write it: whole units with ``precision`` decimals."""

    symbol: str
    precision: int

    def text(self, units: int) -> str:
        return f"{format_units(units, self.precision)} {self.symbol}"

    def parse(self, text: str, what: str, *, positive: bool = True) -> int:
        """Units in ``text``; BadInput naming ``what`` (an argument) if it cannot be."""
        try:
            return parse_units(text, self.precision, positive=positive, unit=self.symbol)
        except ValueError as exc:
            raise BadInput(f"{what}: {exc}") from None


MUX_UNIT = Unit("MUX", DECIMALS)


@dataclass(frozen=True, slots=True)
class Shape:
    """How the numbers of one object are shown: ASSET_FIELDS and karma in ``asset`` (the
    society's asset, or the asset shown), an account's ``assets`` by their own symbols,
    and ``votes`` as stake (MUX) only inside a witness."""

    asset: Unit = MUX_UNIT
    assets: Mapping[str, Unit] = field(default_factory=dict)
    votes_are_stake: bool = False


# --- context ----------------------------------------------------------------------------


@dataclass
class Env:
    """What the global options decide, shared by every command through ctx.obj."""

    keystore_dir: Path
    rpc_url: str
    as_json: bool
    rpc_explicit: bool = True  # --rpc or MUXER_RPC given (else the default URL)
    _client: RpcClient | None = field(default=None, repr=False)
    _units: dict[str, Unit] = field(default_factory=dict, repr=False)
    _societies: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)
    _names: dict[str, str] | None = field(default=None, repr=False)

    def keystore(self) -> Keystore:
        return Keystore(self.keystore_dir)

    def rpc(self) -> RpcClient:
        if self._client is None:
            self._client = RpcClient(self.rpc_url)
            click.get_current_context().find_root().call_on_close(self._client.close)
        return self._client

    def call(self, method: str, *params: Any) -> Any:
        return self.rpc().call(method, *params)

    def call_if_known(self, method: str, *params: Any) -> Any:
        """``call``, or None from a node that does not know the method (an older node)."""
        try:
            return self.call(method, *params)
        except RpcError as exc:
            if exc.code == RPC_METHOD_NOT_FOUND:
                return None
            raise

    def asset_unit(self, symbol: str) -> Unit:
        """How amounts of asset ``symbol`` are written (get_asset's precision)."""
        if symbol == MUX_UNIT.symbol:
            return MUX_UNIT
        if symbol not in self._units:
            info = self.call("get_asset", symbol)
            precision = info.get("precision") if isinstance(info, dict) else None
            if info is None:
                raise WalletError(f"no asset {_safe(symbol)!r} on the chain")
            if type(precision) is not int or not 0 <= precision <= 18:
                raise RpcProtocolError(f"get_asset {symbol!r} has no valid precision")
            self._units[symbol] = Unit(symbol, precision)
        return self._units[symbol]

    def rules_unit(self, rules: Any) -> Unit:
        """The unit of a society's amounts, from its rules (no ``asset``: a version 1 node,
        so MUX)."""
        symbol = rules.get("asset", "MUX") if isinstance(rules, Mapping) else "MUX"
        return self.asset_unit(str(symbol))

    def society(self, society: str) -> dict[str, Any]:
        if society not in self._societies:
            obj = self.call("get_society", society)
            if not isinstance(obj, dict):
                raise RpcProtocolError("get_society did not answer an object")
            self._societies[society] = obj
        return self._societies[society]

    def society_unit(self, society: str) -> Unit:
        return self.rules_unit(self.society(society).get("rules"))

    def claim(self, claim_id: str) -> dict[str, Any]:
        obj = self.call("get_claim", claim_id)
        if not isinstance(obj, dict):
            raise RpcProtocolError("get_claim did not answer an object")
        return obj

    def names(self) -> dict[str, str]:
        """Address -> key name, for the wallet's own keys (shown instead of the address)."""
        if self._names is None:
            try:
                self._names = {k.address: k.name for k in self.keystore().list_keys()}
            except KeystoreError:
                self._names = {}
        return self._names


def _env() -> Env:
    env = click.get_current_context().find_object(Env)
    if env is None:  # only if a subcommand is invoked without the group, i.e. a bug
        raise RuntimeError("muxer commands run under the muxer group")
    return env


def _set_json(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        env = ctx.find_object(Env)
        if env is not None:
            env.as_json = True


# Accepted after any command too, where people tend to type it ("muxer claim ID --json").
json_option = click.option(
    "--json", "as_json", is_flag=True, expose_value=False, callback=_set_json,
    help="Print raw JSON (amounts in units) instead of tables.",
)


# --- safe text ----------------------------------------------------------------------------


def _safe(text: str, *, multiline: bool = False) -> str:
    """Chain data is written by strangers: show control and format characters (terminal
    escapes, bidi overrides) as escapes instead of letting them act on the terminal."""
    out = []
    for ch in text:
        if (ch == "\n" and multiline) or unicodedata.category(ch) not in ("Cc", "Cf"):
            out.append(ch)
        else:
            out.append(ch.encode("unicode_escape").decode("ascii"))
    return "".join(out)


# --- parameter types ----------------------------------------------------------------------


class AmountType(click.ParamType[int]):
    name = "mux"

    def __init__(self, *, positive: bool = True) -> None:
        self.positive = positive

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value  # already units (a default given as units)
        try:
            return parse_mux(str(value), positive=self.positive)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class AmountText(click.ParamType[str]):
    """An amount of an asset known only once the node is asked (a society's asset): checked
    here as text (digits, one point, not negative, not zero unless ``positive`` is off),
    converted by ``Unit.parse`` once the precision is known."""

    name = "amount"

    def __init__(self, *, positive: bool = True) -> None:
        self.positive = positive

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        s = str(value).strip()
        try:
            parse_units(s, min(len(s.partition(".")[2]), 18), positive=self.positive,
                        unit="units")
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        return s


_INTERVAL = re.compile(r"([0-9]{1,12})([smhdw]?)")
_INTERVAL_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


class IntervalType(click.ParamType[int]):
    """A period such as 30d, 12h, 90m, 2w or 3600 (seconds); converts to seconds."""

    name = "interval"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        m = _INTERVAL.fullmatch(str(value).strip().lower())
        if m is None:
            self.fail(f"{_safe(str(value)[:40])!r} is not a period (like 30d, 12h, 90m, 2w, "
                      "or seconds)", param, ctx)
        seconds = int(m[1]) * _INTERVAL_S[m[2]]
        if not 1 <= seconds <= ops.MAX_INTERVAL:
            self.fail(f"a period is 1 s to 365 days, not {seconds} s", param, ctx)
        return seconds


class SymbolType(click.ParamType[str]):
    name = "symbol"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        s = str(value)
        if ops.SYMBOL.fullmatch(s) is None and s != ops.MUX:
            self.fail(f"{_safe(s[:40])!r} is not an asset symbol (3-16 characters of A-Z, 0-9 "
                      "and '.', starting with a letter)", param, ctx)
        return s


def _fmt_period(seconds: int) -> str:
    for suffix, size in (("w", 604_800), ("d", 86_400), ("h", 3600), ("m", 60)):
        if seconds % size == 0 and seconds >= size:
            return f"{seconds // size}{suffix}"
    return f"{seconds}s"


class HexRefType(click.ParamType[str]):
    """An id of 64 hex digits (a claim's, a peer's) or a prefix of one of at least
    MIN_PREFIX digits, resolved later as git resolves a commit prefix (``_claim_id``,
    ``_peer_id``). Converts to lowercase hex."""

    def __init__(self, name: str, what: str) -> None:
        self.name = name
        self.what = what

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        s = str(value).strip().lower()
        if not MIN_PREFIX <= len(s) <= 64 or re.fullmatch(r"[0-9a-f]*", s) is None:
            self.fail(
                f"{_safe(s[:80])!r} is not a {self.what} (64 hex digits, or a unique prefix "
                f"of at least {MIN_PREFIX})",
                param, ctx,
            )
        return s


class HexType(click.ParamType[bytes]):
    """Exactly ``size`` bytes as hex (either case, no 0x)."""

    def __init__(self, size: int, name: str) -> None:
        self.size = size
        self.name = name

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> bytes:
        if isinstance(value, bytes):
            return value
        s = str(value).strip()
        if len(s) != 2 * self.size or re.fullmatch(r"[0-9a-fA-F]*", s) is None:
            self.fail(
                f"{_safe(s[:80])!r} is not {2 * self.size} hex digits ({self.size} bytes)",
                param, ctx,
            )
        return bytes.fromhex(s)


class SocietyIdType(click.ParamType[str]):
    name = "society"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        s = str(value)
        if ops.SOCIETY_ID.fullmatch(s) is None:
            self.fail(
                f"{_safe(s[:40])!r} is not a society id (3-32 characters of a-z, 0-9 and '-')",
                param, ctx,
            )
        return s


class KeyNameType(click.ParamType[str]):
    """A key name; with ``must_exist`` it must name a key in the keystore."""

    name = "key"

    def __init__(self, *, must_exist: bool) -> None:
        self.must_exist = must_exist

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        name = str(value)
        try:
            check_name(name)
        except BadName as exc:
            self.fail(str(exc), param, ctx)
        if self.must_exist:
            ks = _env().keystore()
            if not ks.exists(name):
                self.fail(f"no key named {name!r} in the keystore {ks.path}", param, ctx)
        return name


class AddressType(click.ParamType[str]):
    """An ``mx`` address, or the name of a keystore key standing for its address.
    Converts to the address text (canonical lowercase ``mx`` form)."""

    name = "address"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value)
        try:
            return address_to_text(address_from_text(text))
        except AddressError as exc:
            address_problem = str(exc)
        ks = _env().keystore()
        if ks.exists(text):
            try:
                return ks.show(text).address
            except KeystoreError as exc:
                self.fail(str(exc), param, ctx)
        if text.lower().startswith("mx"):
            self.fail(
                f"{_safe(address_problem)}, and no key has that name in the keystore {ks.path}",
                param, ctx,
            )
        self.fail(
            f"{_safe(text[:50])!r} is neither an address (mx + 40 hex digits) nor a key in "
            f"the keystore {ks.path}",
            param, ctx,
        )


AMOUNT = AmountType(positive=True)
ASSET_AMOUNT = AmountText()
INTERVAL = IntervalType()
SYMBOL = SymbolType()
CLAIM_ID = HexRefType("claim_id", "claim id")
TX_ID = HexType(32, "tx_id")
SIGNING_KEY = HexType(32, "hex")
SOCIETY = SocietyIdType()
FROM_KEY = KeyNameType(must_exist=True)
NEW_KEY = KeyNameType(must_exist=False)
ADDRESS = AddressType()


# --- output -------------------------------------------------------------------------------


def _console() -> Console:
    # No highlighting or markup: values are data, and "[x]" in a claim subject is text.
    return Console(highlight=False, markup=False, emoji=False)


def _emit_json(data: Any) -> None:
    # ensure_ascii keeps control characters from the chain escaped on the terminal.
    click.echo(json.dumps(data, indent=2))


def _fmt_time(t: int) -> str:
    try:
        when = datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):
        return str(t)
    return f"{t} ({when})"


def _fmt_time_short(t: int) -> str:
    """A time in a table cell: minutes are enough there, and the cell stays narrow."""
    try:
        return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M")
    except (OverflowError, OSError, ValueError):
        return str(t)


def _fmt(key: str, value: Any, shape: Shape) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None:
        return "-"
    if isinstance(value, int):
        if key in MUX_FIELDS or (key == "votes" and shape.votes_are_stake):
            return MUX_UNIT.text(value)
        if key in ASSET_FIELDS:
            return shape.asset.text(value)
        if key in KARMA_FIELDS:
            return format_units(value, shape.asset.precision)
        if key in TIME_FIELDS:
            return _fmt_time(value)
        if key == "interval_s":
            return f"{value} ({_fmt_period(value)})" if value else "0"
        return str(value)
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str):
        return _safe(value, multiline=True) if value else "-"
    if isinstance(value, list):
        if not value:
            return "-"
        items = [_fmt(key, v, shape) for v in value]
        return "\n".join(items) if any(len(i) > 20 for i in items) else ", ".join(items)
    return _safe(json.dumps(value))


def _flatten(obj: Mapping[str, Any], shape: Shape, prefix: str = "") -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for key, value in obj.items():
        if key == "assets" and isinstance(value, Mapping):
            # An account's balances per asset, each in its own precision.
            for symbol, units in value.items():
                unit = shape.assets.get(symbol, MUX_UNIT if symbol == "MUX" else None)
                text = unit.text(units) if unit is not None and type(units) is int \
                    else _fmt(symbol, units, shape)
                rows.append((f"{prefix}{key}.{_safe(str(symbol))}", text))
        elif isinstance(value, Mapping):
            inner = replace(shape, votes_are_stake=True) if key == "witness" else shape
            rows.extend(_flatten(value, inner, f"{prefix}{key}."))
        else:
            rows.append((f"{prefix}{key}", _fmt(key, value, shape)))
    return rows


def _show_object(title: str, obj: Any, shape: Shape | None = None) -> None:
    """One object: raw JSON with --json, else aligned "field  value" lines under a title.

    Lines rather than a table: ids and keys are 64 hex digits, and a table in an 80-column
    terminal would break them across lines, which ruins copying them."""
    if _env().as_json:
        _emit_json(obj)
        return
    _print_object(title, obj, shape or Shape())


def _print_object(title: str, obj: Any, shape: Shape) -> None:
    if not isinstance(obj, Mapping):
        raise RpcProtocolError(f"the node answered {type(obj).__name__} where an object was due")
    rows = _flatten(obj, shape)
    width = max((len(k) for k, _v in rows), default=0)
    console = _console()
    console.print(Text(_safe(title), style="bold"))
    names = _env().names()
    room = max(20, console.width - width - 4)
    for key, text in rows:
        if text in names:  # one of the wallet's own addresses: say whose
            text = f"{text} ({_safe(names[text])})"
        # Text wraps at spaces within the terminal; ids and addresses have none, so they
        # stay whole. Continuation lines line up under the value's first line.
        lines = [part for line in text.split("\n")
                 for part in (textwrap.wrap(line, room, break_long_words=False,
                                            break_on_hyphens=False) or [""])]
        value = ("\n" + " " * (width + 4)).join(lines)
        console.print(Text(f"  {key.ljust(width)}  {value}"), soft_wrap=True)


@dataclass(frozen=True, slots=True)
class Col:
    """A table column. ``kind``: "id" (hex, shown as its first SHORT_ID digits), "addr"
    (an address: the wallet's key name if it is one, else its first 10 characters), "whole"
    (never wrapped nor cut: an address to copy), "num" (an amount, karma or count: the unit
    goes in the heading, never wrapped), "time" (to the minute), "text" (wraps, sharing the
    room left), "word" (short text, wraps only if it must)."""

    key: str
    heading: str
    kind: str = "text"


def _cell(col: Col, value: Any, shape: Shape) -> str:
    if value is None:
        return "-"
    if col.kind == "id" and isinstance(value, str):
        return _safe(value[:SHORT_ID])
    if col.kind == "addr" and isinstance(value, str):
        return _safe(_env().names().get(value, value[:10]))
    if col.kind == "time" and type(value) is int:
        return _fmt_time_short(value)
    if col.kind == "num" and type(value) is int:
        if col.key in ASSET_FIELDS:
            return format_units(value, shape.asset.precision)
        if col.key in MUX_FIELDS or (col.key == "votes" and shape.votes_are_stake):
            return format_units(value, MUX_UNIT.precision)
        if col.key in KARMA_FIELDS:
            return format_units(value, shape.asset.precision)
    return _fmt(col.key, value, shape)


def _heading(col: Col, shape: Shape) -> str:
    if col.kind == "num" and col.key in ASSET_FIELDS:
        return f"{col.heading} {shape.asset.symbol}"
    if col.kind == "num" and (col.key in MUX_FIELDS or col.key == "votes"):
        return f"{col.heading} MUX"
    return col.heading


def _show_rows(
    title: str, items: Any, columns: Iterable[Col], shape: Shape | None = None
) -> None:
    """A list of objects: raw JSON with --json, else a table of the chosen columns."""
    if _env().as_json:
        _emit_json(items)
        return
    _print_rows(title, items, list(columns), shape or Shape())


def _print_rows(title: str, items: Any, cols: list[Col], shape: Shape) -> None:
    """The table fits the terminal (80 columns too): no vertical rules, ids short and whole,
    numbers whole, only text columns wrap."""
    if not isinstance(items, list):
        raise RpcProtocolError(f"the node answered {type(items).__name__} where a list was due")
    # No vertical rules: two spaces between columns are all the room they take.
    table = Table(title=_safe(title), title_justify="left", box=box.SIMPLE_HEAD,
                  show_edge=False, pad_edge=False, collapse_padding=True)
    for col in cols:
        if col.kind == "text":
            table.add_column(_heading(col, shape), overflow="fold", ratio=1, min_width=8)
        elif col.kind == "word":  # short text: wraps only when nothing else can give
            table.add_column(_heading(col, shape), overflow="fold", min_width=8)
        else:
            table.add_column(_heading(col, shape), no_wrap=True,
                             justify="right" if col.kind == "num" else "left")
    for item in items:
        row = item if isinstance(item, Mapping) else {}
        table.add_row(*(Text(_cell(c, row.get(c.key), shape)) for c in cols))
    console = _console()
    console.print(table)
    if not items:
        console.print("(none)")


# --- error reporting ----------------------------------------------------------------------


def _rpc_error_text(exc: RpcError, rpc_url: str) -> str:
    if exc.code == RPC_REJECTED:
        reason = exc.reason
        sentence = REASON_TEXT.get(reason or "")
        if sentence is None:  # a reason this wallet does not know: trust the node's words
            return f"transaction rejected: {_safe(exc.message)} (reason: {reason})"
        node_says = _safe(exc.message)
        return f"transaction rejected: {sentence}\n  (reason: {reason}; node: {node_says})"
    if exc.code == RPC_NOT_FOUND:
        data = exc.data if isinstance(exc.data, dict) else {}
        what, key = data.get("what"), data.get("id")
        if what == "block":
            return f"no block at height {key} (the node's chain is not that long)"
        if what == "member" and isinstance(key, list) and len(key) == 2:
            return f"{_safe(str(key[1]))} is not a member of society {_safe(str(key[0]))!r}"
        if what in ("society", "claim"):
            return f"no {what} {_safe(str(key))!r} on the chain"
        return f"not found: {_safe(exc.message)}"
    if exc.code == RPC_METHOD_NOT_FOUND:
        return (
            f"the node at {rpc_url} does not know this method ({_safe(exc.message)}); "
            "is it a MUXER node of a matching version?"
        )
    if exc.code == RPC_INVALID_PARAMS:
        return f"the node refused the request: {_safe(exc.message)}"
    if exc.code == RPC_UNAUTHORIZED:
        return (f"the node at {rpc_url} refused the admin call: the token does not match "
                "(is --data-dir the data directory of the node at that URL?)")
    return f"the node answered error {exc.code}: {_safe(exc.message)}"


class WalletGroup(click.Group):
    """The root group: turns the wallet's expected failures into one clear message and an
    exit code (never a traceback); anything else is a bug and keeps its traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RpcError as exc:
            env = ctx.find_object(Env)
            message = _rpc_error_text(exc, env.rpc_url if env else "?")
            details: dict[str, Any] = {"code": exc.code, "node_message": exc.message}
            if exc.reason is not None:
                details["reason"] = exc.reason
            self._fail(ctx, WalletError(message, **details))
        except (BadName, BadSeed) as exc:
            self._fail(ctx, BadInput(str(exc)))
        except (KeystoreError, RpcClientError) as exc:
            self._fail(ctx, WalletError(str(exc)))
        except WalletError as exc:
            self._fail(ctx, exc)

    @staticmethod
    def _fail(ctx: click.Context, exc: WalletError) -> NoReturn:
        env = ctx.find_object(Env)
        if env is not None and env.as_json:
            # Scripts get the same facts as JSON on stderr; stdout stays empty.
            doc = {"error": {"message": exc.message, "exit_code": exc.exit_code,
                             **exc.details}}
            click.echo(json.dumps(doc), err=True)
            ctx.exit(exc.exit_code)
        raise exc


class FormsGroup(click.Group):
    """A group whose subcommand may be left out: ``pick(args)`` names the one meant.

    Used where one word has two forms, so ``muxer claim ID`` and ``muxer claim FROM
    SOCIETY AMOUNT ...`` both work. An explicit subcommand name always wins."""

    def __init__(self, *args: Any, pick: Callable[[list[str]], str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pick = pick

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = [self.pick(args), *args]
        return super().parse_args(ctx, args)


# --- the CLI ------------------------------------------------------------------------------


@click.group(
    cls=WalletGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="Exit codes: 0 done, 1 the operation failed, 2 bad usage or input.",
)
@click.option(
    "--keystore", "keystore_dir", envvar=ENV_KEYSTORE, metavar="DIR",
    type=click.Path(file_okay=False, path_type=Path), default=None,
    help=f"Keystore directory [env {ENV_KEYSTORE}; default ~/.muxer/keys].",
)
@click.option(
    "--rpc", "rpc_url", metavar="URL", default=None,
    help=f"Node JSON-RPC URL [env {ENV_RPC}; default {DEFAULT_RPC_URL}].",
)
@click.option("--json", "as_json", is_flag=True,
              help="Print raw JSON (amounts in units) instead of tables.")
@click.version_option(package_name="muxernode", prog_name="muxer")
@click.pass_context
def main(
    ctx: click.Context, keystore_dir: Path | None, rpc_url: str | None, as_json: bool
) -> None:
    """MUXER wallet: keys, mutual-aid transactions and chain queries.

    Amounts are written in whole units of their asset, with its decimals: MUX has 5 (1 MUX
    = 100000 units), a society's amounts and karma are in the society's asset (karma 2.5 in
    a MUX society is 250000 units). FROM is the name of a key in the keystore; an address
    argument also accepts a key name; a claim id may be shortened to a unique prefix of 4
    or more digits. Passphrases come from MUXER_PASSPHRASE or a prompt.
    """
    ctx.obj = Env(
        keystore_dir=(keystore_dir or default_keystore_dir()).expanduser(),
        rpc_url=resolve_rpc_url(rpc_url),
        as_json=as_json,
        rpc_explicit=bool(rpc_url or os.environ.get(ENV_RPC)),
    )


# --- keys ---------------------------------------------------------------------------------


@main.group()
def keys() -> None:
    """Manage the keys in the encrypted keystore."""


def _show_key(info: KeyInfo, title: str) -> None:
    _show_object(title, info.as_json())


@keys.command("new")
@click.argument("name", type=NEW_KEY)
@json_option
def keys_new(name: str) -> None:
    """Create a new random key NAME, sealed under a passphrase."""
    ks = _env().keystore()
    if ks.exists(name):
        raise WalletError(f"a key named {name!r} already exists in {ks.path}")
    passphrase = read_passphrase(name, confirm=True)
    info = ks.create(name, passphrase)
    _show_key(info, f"new key {name}")
    click.echo("Keep the passphrase safe: without it the key cannot be unlocked.", err=True)


@keys.command("import")
@click.argument("name", type=NEW_KEY)
@json_option
def keys_import(name: str) -> None:
    """Import a key NAME from its 32-byte Ed25519 seed (hex, from MUXER_SEED or a prompt)."""
    ks = _env().keystore()
    if ks.exists(name):
        raise WalletError(f"a key named {name!r} already exists in {ks.path}")
    seed_hex = read_seed_hex()
    parse_seed_hex(seed_hex)  # refuse a bad seed before asking for a passphrase
    passphrase = read_passphrase(name, confirm=True)
    info = ks.import_seed(name, seed_hex, passphrase)
    _show_key(info, f"imported key {name}")


@keys.command("list")
@json_option
def keys_list() -> None:
    """List the keys (names and addresses; no secrets)."""
    infos = _env().keystore().list_keys()
    _show_rows("keys", [i.as_json() for i in infos],
               [Col("name", "name"), Col("address", "address", "whole")])


@keys.command("show")
@click.argument("name", type=FROM_KEY)
@json_option
def keys_show(name: str) -> None:
    """Show a key's address and public key (never its secret)."""
    _show_key(_env().keystore().show(name), f"key {name}")


# --- transactions -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TxOptions:
    fee: int | None
    expires_in: int
    wait: str | None
    timeout: int


_TX_OPTIONS = (
    click.option("--fee", type=AmountType(positive=False), default=None, metavar="MUX",
                 help="Fee in MUX [default: the chain's base_fee]."),
    click.option("--expires-in", type=click.IntRange(1, 86_400), default=600,
                 show_default=True, metavar="SECONDS",
                 help="Expiration, in seconds after the head block's time."),
    click.option("--wait", type=click.Choice(["included", "final"]), default=None,
                 help="Wait until the tx is included in a block, or final."),
    click.option("--timeout", type=click.IntRange(1, 3600), default=60, show_default=True,
                 metavar="SECONDS", help="Give up waiting after this long."),
    json_option,
)


def tx_options(f: Callable[..., None]) -> Callable[..., None]:
    """The options every tx command takes, handed to it as one ``tx: TxOptions``."""

    @functools.wraps(f)
    def wrapper(
        *args: Any, fee: int | None, expires_in: int, wait: str | None, timeout: int,
        **kwargs: Any,
    ) -> None:
        f(*args, tx=TxOptions(fee, expires_in, wait, timeout), **kwargs)

    for option in reversed(_TX_OPTIONS):
        wrapper = option(wrapper)
    return wrapper


def _static_check(op: ops.Op) -> list[Any]:
    """The op array, after the node's own static checks, so that a too-long memo or bad
    rules fail here, with no passphrase asked and nothing sent."""
    array = ops.encode_op(op)
    try:
        ops.decode_op(array)
    except Rejected as exc:
        raise BadInput(f"invalid {ops.OP_NAMES[op.OPCODE]}: {exc.message}") from None
    return array


def _chain_field(chain: Any, name: str, kind: type) -> Any:
    value = chain.get(name) if isinstance(chain, dict) else None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise RpcProtocolError(f"chain_info has no valid {name!r}: is this a MUXER node?")
    return value


def _send(from_name: str, op: ops.Op, tx: TxOptions) -> None:
    env = _env()
    ks = env.keystore()
    sender = ks.show(from_name)
    op_array = _static_check(op)
    chain = env.call("chain_info")
    try:
        chain_id = bytes.fromhex(_chain_field(chain, "chain_id", str))
        head_id = bytes.fromhex(_chain_field(chain, "head_id", str))
    except ValueError:
        raise RpcProtocolError("chain_info has a chain_id or head_id that is not hex") from None
    head_height = _chain_field(chain, "head_height", int)
    head_time = _chain_field(chain, "head_time", int)
    base_fee = _chain_field(chain, "base_fee", int)
    fee = base_fee if tx.fee is None else tx.fee
    if fee < base_fee:
        raise BadInput(
            f"--fee {format_mux(fee)} MUX is below the chain's base fee "
            f"{format_mux(base_fee)} MUX"
        )
    key = ks.unlock(from_name, read_passphrase(from_name, confirm=False))
    ref_block_num, ref_block_prefix = tapos_of(head_height, head_id)
    expiration = head_time + tx.expires_in
    signed = build_tx(
        key, chain_id, op_array,
        ref_block_num=ref_block_num, ref_block_prefix=ref_block_prefix,
        expiration=expiration, fee=fee,
    )
    result = env.call("submit_tx", signed.raw.hex())
    tx_id = signed.tx_id.hex()
    if not isinstance(result, dict) or result.get("tx_id") != tx_id:
        # The id is a hash of what we signed; a node reporting another is not to be trusted.
        raise RpcProtocolError(
            f"the node acknowledged tx {str(result)[:80]!r}, but the id is {tx_id}"
        )
    out: dict[str, Any] = {
        "tx_id": tx_id, "op": ops.OP_NAMES[op.OPCODE], "sender": sender.address,
        "fee": fee, "expiration": expiration, "status": "pending",
    }
    if tx.wait is not None:
        try:
            info = _wait_for(env, tx_id, tx.wait, tx.timeout, expiration, chain)
        except RpcClientError as exc:
            # Say that the tx did go out, so nobody sends it twice in a hurry.
            raise WalletError(f"tx {tx_id} was submitted, but waiting for it failed: {exc}") \
                from None
        out["status"] = info.get("status")
        if "height" in info:
            out["height"] = info["height"]
    _show_object(f"{out['op']} submitted", out)


def _wait_for(
    env: Env, tx_id: str, target: str, timeout_s: int, expiration: int, chain: Mapping[str, Any]
) -> dict[str, Any]:
    """Poll get_tx until the status reaches ``target``; bounded by ``timeout_s`` and by the
    tx's expiration (once the head's time reaches it, the tx can never be included)."""
    wanted = {"included": ("included", "final"), "final": ("final",)}[target]
    interval = chain.get("block_interval_s")
    # Half a block: fast enough to notice, far from hammering the node.
    pause = min(max(interval / 2 if isinstance(interval, int | float) else 0.5, 0.2), 2.0)
    deadline = time.monotonic() + timeout_s
    last: dict[str, Any] = {}
    while True:
        info = env.call("get_tx", tx_id)
        if isinstance(info, dict):
            last = info
        status = last.get("status")
        if status in wanted:
            return last
        if status in ("pending", "unknown", None):
            head = env.call("chain_info")
            if isinstance(head, dict) and isinstance(head.get("head_time"), int) \
                    and head["head_time"] >= expiration:
                raise WalletError(
                    f"tx {tx_id} expired without being included (status {status}); "
                    "send it again"
                )
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            where = f" at height {last['height']}" if "height" in last else ""
            raise WalletError(
                f"gave up after {timeout_s} s waiting for tx {tx_id} to be {target}; "
                f"its last status was {status!r}{where}. Check later with: muxer tx {tx_id}"
            )
        time.sleep(min(pause, remaining))


@main.command()
@click.argument("from_name", metavar="FROM", type=FROM_KEY)
@click.argument("to", type=ADDRESS)
@click.argument("amount", type=AMOUNT)
@click.option("--memo", default="", help="A note for the recipient (at most 256 bytes).")
@tx_options
def transfer(from_name: str, to: str, amount: int, memo: str, tx: TxOptions) -> None:
    """Send AMOUNT MUX from key FROM to TO (an address or a key name)."""
    _send(from_name, ops.Transfer(address_from_text(to), amount, memo), tx)


@main.group()
def asset() -> None:
    """User-issued assets (a gateway's BTC IOUs, say): create, issue, transfer, show, list."""


@asset.command("create")
@click.argument("from_name", metavar="FROM", type=FROM_KEY)
@click.argument("symbol", type=SYMBOL)
@click.option("--precision", type=click.IntRange(0, 18), required=True,
              help="Decimals people write amounts with (8 for a BTC IOU); display only.")
@click.option("--max-supply", type=ASSET_AMOUNT, required=True, metavar="AMOUNT",
              help="Most that can ever be issued, in whole units with the precision.")
@click.option("--description", default="", help="What it is and who redeems it (<= 1024 B).")
@tx_options
def asset_create(
    from_name: str, symbol: str, precision: int, max_supply: str, description: str,
    tx: TxOptions,
) -> None:
    """Create asset SYMBOL with FROM as its issuer (nothing is issued yet)."""
    if symbol == ops.MUX:
        raise BadInput("MUX is the chain's own asset; choose another symbol")
    units = Unit(symbol, precision).parse(max_supply, "--max-supply")
    _send(from_name, ops.CreateAsset(symbol, precision, units, description), tx)


def _asset_move(f: Callable[..., None]) -> Callable[..., None]:
    """The arguments of a move of an asset (issue, transfer): FROM SYMBOL TO AMOUNT --memo."""
    for decorator in reversed((
        click.argument("from_name", metavar="FROM", type=FROM_KEY),
        click.argument("symbol", type=SYMBOL),
        click.argument("to", type=ADDRESS),
        click.argument("amount", type=ASSET_AMOUNT),
        click.option("--memo", default="", help="A note for the recipient (at most 256 bytes)."),
        tx_options,
    )):
        f = decorator(f)
    return f


def _send_asset(
    op: type[ops.IssueAsset] | type[ops.TransferAsset], from_name: str, symbol: str, to: str,
    amount: str, memo: str, tx: TxOptions,
) -> None:
    units = _env().asset_unit(symbol).parse(amount, "AMOUNT")
    _send(from_name, op(symbol, address_from_text(to), units, memo), tx)


@asset.command("issue")
@_asset_move
def asset_issue(
    from_name: str, symbol: str, to: str, amount: str, memo: str, tx: TxOptions
) -> None:
    """Issue AMOUNT of SYMBOL (FROM is its issuer) to TO, up to its max supply."""
    _send_asset(ops.IssueAsset, from_name, symbol, to, amount, memo, tx)


@asset.command("transfer")
@_asset_move
def asset_transfer(
    from_name: str, symbol: str, to: str, amount: str, memo: str, tx: TxOptions
) -> None:
    """Send AMOUNT of SYMBOL from FROM to TO (sending it to the issuer redeems it off
    chain). MUX moves with `muxer transfer`."""
    if symbol == ops.MUX:
        raise BadInput("MUX moves with: muxer transfer FROM TO AMOUNT")
    _send_asset(ops.TransferAsset, from_name, symbol, to, amount, memo, tx)


@asset.command("show")
@click.argument("symbol", type=SYMBOL)
@json_option
def asset_show(symbol: str) -> None:
    """Show asset SYMBOL: issuer, precision, supply, what was burned."""
    env = _env()
    obj = env.call("get_asset", symbol)
    if obj is None:
        raise WalletError(f"no asset {symbol!r} on the chain"
                          + (" (MUX is the chain's own asset: see muxer status)"
                             if symbol == ops.MUX else ""))
    precision = obj.get("precision") if isinstance(obj, dict) else None
    unit = Unit(symbol, precision) if type(precision) is int and 0 <= precision <= 18 \
        else MUX_UNIT
    _show_object(f"asset {symbol}", obj, Shape(asset=unit))


@asset.command("list")
@json_option
def asset_list() -> None:
    """List the user-issued assets, by symbol."""
    env = _env()
    items = env.call("list_assets")
    if env.as_json:
        _emit_json(items)
        return
    rows = []
    for a in items if isinstance(items, list) else []:
        if isinstance(a, dict) and type(a.get("precision")) is int:
            p = a["precision"]
            rows.append({**a, "supply_text": format_units(int(a.get("supply", 0)), p),
                         "max_text": format_units(int(a.get("max_supply", 0)), p)})
    _print_rows("assets", rows,
                [Col("symbol", "symbol", "whole"), Col("precision", "dec", "num"),
                 Col("supply_text", "supply", "num"), Col("max_text", "max supply", "num"),
                 Col("issuer", "issuer", "addr"), Col("description", "description")],
                Shape())


def _pick_society(_args: list[str]) -> str:
    return "show"  # "society ID"; creating always says "create"


@main.group(cls=FormsGroup, pick=_pick_society)
def society() -> None:
    """Create a society (society create ...) or show one (society ID)."""


_D = ops.DEFAULT_RULES


@society.command("create")
@click.argument("from_name", metavar="FROM", type=FROM_KEY)
@click.argument("society_id", metavar="SOCIETY", type=SOCIETY)
@click.option("--name", required=True, help="Display name (at most 64 bytes).")
@click.option("--purpose", required=True, help="The risk the society covers (<= 1024 bytes).")
@click.option("--decay-period-s", type=click.IntRange(min=1), default=_D.decay_period_s,
              show_default=True, help="Karma decay period, seconds.")
@click.option("--decay-ppm", type=click.IntRange(0, 999_999), default=_D.decay_ppm,
              show_default=True, help="Karma lost per period, parts per million.")
@click.option("--approval-bp", type=click.IntRange(1, 10_000), default=_D.approval_bp,
              show_default=True, help="Net approval needed, basis points of total karma.")
@click.option("--observation-s", type=click.IntRange(0, ops.MAX_AMOUNT),
              default=_D.observation_s, show_default=True,
              help="Seconds after joining before a member may claim.")
@click.option("--waiting-s", type=click.IntRange(0, ops.MAX_TTL), default=_D.waiting_s,
              show_default=True, help="Seconds after a claim opens before gifts.")
@click.option("--claim-ttl-s", type=click.IntRange(1, ops.MAX_TTL), default=_D.claim_ttl_s,
              show_default=True, help="Seconds a claim stays open.")
@click.option("--benefit-ratio", type=click.IntRange(1, 1000), default=_D.benefit_ratio,
              show_default=True, help="A claim's limit: at most this times its karma.")
@click.option("--asset", type=SYMBOL, default=ops.MUX, show_default=True,
              help="The asset of pledges, escrow, bonds and gifts (fees stay MUX).")
@click.option("--claim-bond", type=AmountText(positive=False),
              default=format_mux(_D.claim_bond).rstrip("0").rstrip("."), show_default=True,
              metavar="AMOUNT", help="Bond a claimant deposits, in the society's asset.")
@click.option("--min-pledge", type=ASSET_AMOUNT,
              default=format_mux(_D.min_pledge).rstrip("0").rstrip("."), show_default=True,
              metavar="AMOUNT", help="Smallest pledge, in the society's asset.")
@click.option("--charity-bp", type=click.IntRange(0, ops.MAX_CHARITY_BP), default=0,
              show_default=True,
              help="Part of every pledge that goes to the member's charity escrow, basis "
                   "points.")
@click.option("--charity-slots", type=click.IntRange(1, ops.MAX_CHARITY_SLOTS), default=10,
              show_default=True, help="How many charity requests may receive gifts at once.")
@tx_options
def society_create(
    from_name: str, society_id: str, name: str, purpose: str, decay_period_s: int,
    decay_ppm: int, approval_bp: int, observation_s: int, waiting_s: int, claim_ttl_s: int,
    benefit_ratio: int, asset: str, claim_bond: str, min_pledge: str, charity_bp: int,
    charity_slots: int, tx: TxOptions,
) -> None:
    """Create society SOCIETY (its id) with rules fixed forever (protocol sections 4.1 and
    11.2)."""
    unit = _env().asset_unit(asset)
    # The version-1 nine rules when nothing of version 2 is asked: the same bytes as before.
    v2 = (asset, charity_bp, charity_slots) != ops.V1_RULE_DEFAULTS
    rules = ops.Rules(decay_period_s, decay_ppm, approval_bp, observation_s, waiting_s,
                      claim_ttl_s, benefit_ratio,
                      unit.parse(claim_bond, "--claim-bond", positive=False),
                      unit.parse(min_pledge, "--min-pledge"), asset, charity_bp,
                      charity_slots, len(ops.RULE_NAMES_V2 if v2 else ops.RULE_NAMES))
    _send(from_name, ops.CreateSociety(society_id, name, purpose, rules), tx)


@society.command("show")
@click.argument("society_id", metavar="ID", type=SOCIETY)
@json_option
def society_show(society_id: str) -> None:
    """Show society ID: rules, members, total karma, escrow."""
    env = _env()
    obj = env.society(society_id)
    shape = Shape() if env.as_json else Shape(asset=env.rules_unit(obj.get("rules")))
    _show_object(f"society {society_id}", obj, shape)


@main.command()
@click.argument("from_name", metavar="FROM", type=FROM_KEY)
@click.argument("society_id", metavar="SOCIETY", type=SOCIETY)
@click.option("--identity", required=True,
              help="Public name, or a salted hash of it (at most 256 bytes).")
@tx_options
def join(from_name: str, society_id: str, identity: str, tx: TxOptions) -> None:
    """Join SOCIETY as key FROM."""
    _send(from_name, ops.Join(society_id, identity), tx)


@main.command()
@click.argument("from_name", metavar="FROM", type=FROM_KEY)
@click.argument("society_id", metavar="SOCIETY", type=SOCIETY)
@click.argument("amount", type=ASSET_AMOUNT, required=False)
@click.option("--every", type=INTERVAL, default=None, metavar="PERIOD",
              help="Make it a standing pledge, taken by the chain every PERIOD (30d, 1w, "
                   "12h, or seconds) from the balance; replaces an earlier one.")
@click.option("--stop", is_flag=True, help="Cancel FROM's standing pledge (no AMOUNT).")
@tx_options
def pledge(
    from_name: str, society_id: str, amount: str | None, every: int | None, stop: bool,
    tx: TxOptions,
) -> None:
    """Move AMOUNT (of the society's asset) from FROM's balance into its own escrow in
    SOCIETY; earns karma, half the amount. With --every the chain repeats it every period
    (the first time one period from now); --stop cancels that."""
    if stop:
        if amount is not None or every is not None:
            raise click.UsageError("--stop takes no AMOUNT and no --every")
        _send(from_name, ops.StandingPledge(society_id, 0, 0), tx)
        return
    if amount is None:
        raise click.UsageError("give an AMOUNT (or --stop to cancel a standing pledge)")
    units = _env().society_unit(society_id).parse(amount, "AMOUNT")
    if every is not None:
        _send(from_name, ops.StandingPledge(society_id, units, every), tx)
    else:
        _send(from_name, ops.Pledge(society_id, units), tx)


@main.group()
def proxy() -> None:
    """Let another member vote your karma in a society (you can always vote yourself)."""


@proxy.command("set")
@click.argument("from_name", metavar="FROM", type=FROM_KEY)
@click.argument("society_id", metavar="SOCIETY", type=SOCIETY)
@click.argument("proxy_address", metavar="PROXY", type=ADDRESS)
@tx_options
def proxy_set(from_name: str, society_id: str, proxy_address: str, tx: TxOptions) -> None:
    """Make PROXY (an address or key name; a member) vote FROM's karma in SOCIETY."""
    _send(from_name, ops.SetProxy(society_id, address_from_text(proxy_address)), tx)


@proxy.command("clear")
@click.argument("from_name", metavar="FROM", type=FROM_KEY)
@click.argument("society_id", metavar="SOCIETY", type=SOCIETY)
@tx_options
def proxy_clear(from_name: str, society_id: str, tx: TxOptions) -> None:
    """Stop FROM's proxy voting for FROM in SOCIETY."""
    _send(from_name, ops.SetProxy(society_id, b""), tx)


@main.group()
def charity() -> None:
    """Ask a society's charity escrow for help (members or not)."""


@charity.command("request")
@click.argument("from_name", metavar="FROM", type=FROM_KEY)
@click.argument("society_id", metavar="SOCIETY", type=SOCIETY)
@click.argument("amount", type=ASSET_AMOUNT)
@click.option("--subject", required=True, help="Short subject (at most 80 bytes).")
@click.option("--details", default="", help="Details (at most 4096 bytes).")
@click.option("--evidence", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              required=True, help="File whose SHA-256 goes on the chain as evidence.")
@tx_options
def charity_request(
    from_name: str, society_id: str, amount: str, subject: str, details: str, evidence: Path,
    tx: TxOptions,
) -> None:
    """Ask SOCIETY's members for AMOUNT (of its asset) from their charity escrow; the claim
    bond is held, and returned if the request is approved."""
    digest = _sha256_file(evidence)
    units = _env().society_unit(society_id).parse(amount, "AMOUNT")
    _send(from_name, ops.CharityRequest(society_id, units, subject, details, digest), tx)


def _pick_claim(args: list[str]) -> str:
    # One hex argument is a claim id or a prefix of one to show: opening a claim takes at
    # least three (FROM SOCIETY AMOUNT), and "claim alice" is an incomplete open.
    positional = [a for a in args if not a.startswith("-")]
    hex_ref = len(positional) == 1 and re.fullmatch(r"[0-9a-fA-F]{4,64}", positional[0])
    return "show" if hex_ref else "open"


def _claim_id(ref: str) -> str:
    """The full id of the claim ``ref`` names: itself when it has 64 digits, else the one
    claim whose id starts with it, among the claims listed for the societies of the
    wallet's keys, and of every society when the node lists them (list_societies)."""
    if len(ref) == 64:
        return ref
    env = _env()
    societies: dict[str, None] = {}
    for key in env.keystore().list_keys():
        acct = env.call("get_account", key.address)
        for soc in acct.get("societies", []) if isinstance(acct, dict) else []:
            societies.setdefault(str(soc), None)
    searched_all = False
    page: Any = env.call_if_known("list_societies", {"limit": 100})
    for _ in range(_PREFIX_PAGES):
        if not isinstance(page, dict):
            break
        for item in page.get("items", []):
            if isinstance(item, dict) and isinstance(item.get("society"), str):
                societies.setdefault(item["society"], None)
        if page.get("next") is None:
            searched_all = True
            break
        page = env.call("list_societies", {"before": page["next"], "limit": 100})
    found: dict[str, dict[str, Any]] = {}
    for soc in societies:
        for c in env.call("list_claims", soc) or []:
            cid = c.get("claim_id") if isinstance(c, dict) else None
            if isinstance(cid, str) and cid.startswith(ref):
                found[cid] = c
    if len(found) == 1:
        return next(iter(found))
    if not found:
        where = ("on the chain" if searched_all else
                 "in the societies of your keys" + (f" ({', '.join(societies)})"
                                                    if societies else " (they belong to none)"))
        raise WalletError(f"no claim id starts with {ref!r} {where}; give the full id "
                          "(64 hex digits)")
    lines = [f"  {cid}  {_safe(str(c.get('society')))}  {_safe(str(c.get('subject')))[:40]}"
             for cid, c in sorted(found.items())]
    raise BadInput(f"claim id prefix {ref!r} is ambiguous; {len(found)} claims start with "
                   "it:\n" + "\n".join(lines) + "\ngive more digits")


@main.group(cls=FormsGroup, pick=_pick_claim)
def claim() -> None:
    """Open a claim (claim FROM SOCIETY AMOUNT ...) or show one (claim ID)."""


def _sha256_file(path: Path) -> bytes:
    h = hashlib.sha256()
    try:
        with path.open("rb") as f:
            for chunk in iter(functools.partial(f.read, 1 << 16), b""):
                h.update(chunk)
    except OSError as exc:
        raise BadInput(f"cannot read evidence file {path}: {exc.strerror}") from None
    return h.digest()


@claim.command("open")
@click.argument("from_name", metavar="FROM", type=FROM_KEY)
@click.argument("society_id", metavar="SOCIETY", type=SOCIETY)
@click.argument("amount", type=ASSET_AMOUNT)
@click.option("--karma", type=ASSET_AMOUNT, required=True,
              help="Karma to commit, in the society asset's units like amounts (spent "
                   "whatever happens).")
@click.option("--subject", required=True, help="Short subject (at most 80 bytes).")
@click.option("--details", default="", help="Details (at most 4096 bytes).")
@click.option("--evidence", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              required=True, help="File whose SHA-256 goes on the chain as evidence.")
@tx_options
def claim_open(
    from_name: str, society_id: str, amount: str, karma: str, subject: str, details: str,
    evidence: Path, tx: TxOptions,
) -> None:
    """Ask SOCIETY for AMOUNT (of its asset) of help, committing --karma."""
    digest = _sha256_file(evidence)
    unit = _env().society_unit(society_id)
    op = ops.Claim(society_id, unit.parse(amount, "AMOUNT"),
                   Unit("karma", unit.precision).parse(karma, "--karma"), subject, details,
                   digest)
    _send(from_name, op, tx)


@claim.command("show")
@click.argument("claim_ref", metavar="ID", type=CLAIM_ID)
@json_option
def claim_show(claim_ref: str) -> None:
    """Show claim ID (or a unique prefix of it): tallies, limit, what it received, its
    status."""
    env = _env()
    claim_id = _claim_id(claim_ref)
    obj = env.claim(claim_id)
    if env.as_json:
        _emit_json(obj)
        return
    shape = Shape(asset=env.society_unit(str(obj.get("society"))))
    _print_object(f"claim {claim_id}", obj, shape)
    votes = env.call_if_known("list_votes", claim_id)
    if isinstance(votes, list) and votes:
        words = {1: "approve", -1: "reject"}
        rows = [dict(v, stance=words.get(int(v.get("stance") or 0), "-"))
                for v in votes if isinstance(v, dict)]
        click.echo()
        _print_rows("votes", rows, [Col("voter", "voter", "addr"), Col("stance", "stance"),
                                    Col("weight", "weight", "num"), Col("via", "via", "addr")],
                    shape)
    comments = _comments(claim_id)
    if comments is not None:
        click.echo()
        _print_discussion(comments)


_COMMENT_PAGES = 10  # pages of 100 comments shown under a claim at most


def _comments(claim_id: str) -> tuple[list[dict[str, Any]], bool] | None:
    """The claim's comments, oldest first, and whether more remain; None from an older
    node (no list_comments)."""
    env = _env()
    page = env.call_if_known("list_comments", claim_id, {"limit": 100})
    if page is None:
        return None
    items: list[dict[str, Any]] = []
    for _ in range(_COMMENT_PAGES):
        if not isinstance(page, dict):
            raise RpcProtocolError("list_comments did not answer {items, next}")
        items.extend(c for c in page.get("items", []) if isinstance(c, dict))
        if page.get("next") is None:
            return items, False
        page = env.call("list_comments", claim_id, {"after": page["next"], "limit": 100})
    return items, True


def _print_discussion(comments: tuple[list[dict[str, Any]], bool]) -> None:
    items, more = comments
    console = _console()
    console.print(Text(f"discussion ({len(items)}{'+' if more else ''})", style="bold"))
    if not items:
        console.print("  (no comments yet; muxer comment FROM CLAIM TEXT adds one)")
    names = _env().names()
    for c in items:
        author = str(c.get("author", "?"))
        when = _fmt_time_short(c["time"]) if type(c.get("time")) is int else "?"
        console.print(Text(f"  {_safe(names.get(author, author[:10]))}, {when} UTC:",
                           style="bold"))
        # Text wraps by itself at the terminal's width; the indent shows whose it is.
        for line in _safe(str(c.get("text", "")), multiline=True).splitlines() or [""]:
            console.print(Text("    " + line))
    if more:
        console.print(f"  (only the first {len(items)} comments are shown)")


@claim.command("withdraw")
@click.argument("from_name", metavar="FROM", type=FROM_KEY)
@click.argument("claim_ref", metavar="ID", type=CLAIM_ID)
@tx_options
def claim_withdraw(from_name: str, claim_ref: str, tx: TxOptions) -> None:
    """Withdraw FROM's open claim ID: it closes now; the bond comes back if it received
    nothing and has no votes (else it burns); committed karma is spent."""
    _send(from_name, ops.WithdrawClaim(bytes.fromhex(_claim_id(claim_ref))), tx)


@claim.command("amend")
@click.argument("from_name", metavar="FROM", type=FROM_KEY)
@click.argument("claim_ref", metavar="ID", type=CLAIM_ID)
@click.option("--details", required=True, help="New details (at most 4096 bytes).")
@click.option("--evidence", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              required=True, help="File whose SHA-256 replaces the evidence.")
@tx_options
def claim_amend(
    from_name: str, claim_ref: str, details: str, evidence: Path, tx: TxOptions
) -> None:
    """Replace the details and evidence of FROM's open claim ID, while nobody has voted on
    it (the amount stays)."""
    digest = _sha256_file(evidence)
    _send(from_name, ops.AmendClaim(bytes.fromhex(_claim_id(claim_ref)), details, digest), tx)


@main.command()
@click.argument("from_name", metavar="FROM", type=FROM_KEY)
@click.argument("claim_ref", metavar="CLAIM_ID", type=CLAIM_ID)
@click.argument("text")
@tx_options
def comment(from_name: str, claim_ref: str, text: str, tx: TxOptions) -> None:
    """Say TEXT (1-1024 bytes) under a claim: ask about the evidence, answer, thank."""
    _send(from_name, ops.Comment(bytes.fromhex(_claim_id(claim_ref)), text), tx)


def _claim_of(claim_ref: str) -> tuple[bytes, dict[str, Any]]:
    """The id (bytes) and get_claim of the claim a ref names."""
    claim_id = _claim_id(claim_ref)
    return bytes.fromhex(claim_id), _env().claim(claim_id)


@main.command()
@click.argument("from_name", metavar="FROM", type=FROM_KEY)
@click.argument("claim_ref", metavar="CLAIM_ID", type=CLAIM_ID)
@click.argument("stance", type=click.Choice(list(_STANCES)))
@tx_options
def vote(from_name: str, claim_ref: str, stance: str, tx: TxOptions) -> None:
    """Vote on CLAIM_ID (or a unique prefix) with FROM's karma: approve, reject, or
    withdraw a vote."""
    _send(from_name, ops.Vote(bytes.fromhex(_claim_id(claim_ref)), _STANCES[stance]), tx)


@main.command()
@click.argument("from_name", metavar="FROM", type=FROM_KEY)
@click.argument("claim_ref", metavar="CLAIM_ID", type=CLAIM_ID)
@click.argument("amount", type=ASSET_AMOUNT)
@tx_options
def give(from_name: str, claim_ref: str, amount: str, tx: TxOptions) -> None:
    """Give AMOUNT (of the society's asset) from FROM's escrow to an approved claim (from
    FROM's charity escrow to an approved charity request)."""
    claim_id, obj = _claim_of(claim_ref)
    units = _env().society_unit(str(obj.get("society"))).parse(amount, "AMOUNT")
    _send(from_name, ops.Give(claim_id, units), tx)


@main.group()
def witness() -> None:
    """Register as a witness, or vote for witnesses."""


@witness.command("register")
@click.argument("from_name", metavar="FROM", type=FROM_KEY)
@click.option("--signing-key", type=SIGNING_KEY, required=True,
              help="The block signing public key, 64 hex digits.")
@click.option("--url", required=True, help="A URL about the witness (at most 256 bytes).")
@tx_options
def witness_register(from_name: str, signing_key: bytes, url: str, tx: TxOptions) -> None:
    """Register FROM as a witness, or change its signing key and URL."""
    _send(from_name, ops.RegisterWitness(signing_key, url), tx)


@witness.command("vote")
@click.argument("from_name", metavar="FROM", type=FROM_KEY)
@click.argument("addresses", metavar="ADDR...", nargs=-1, type=ADDRESS)
@click.option("--clear", is_flag=True, help="Approve no witness at all (no ADDR given).")
@tx_options
def witness_vote(
    from_name: str, addresses: tuple[str, ...], clear: bool, tx: TxOptions
) -> None:
    """Approve the witnesses ADDR... (replacing FROM's earlier approvals; at most 30)."""
    # An empty list is a valid op that erases every approval: ask for it explicitly.
    if not addresses and not clear:
        raise click.UsageError("give at least one witness address, or --clear to approve none")
    if addresses and clear:
        raise click.UsageError("--clear takes no addresses")
    if len(set(addresses)) != len(addresses):
        raise click.UsageError("each witness may be approved once")
    _send(from_name, ops.VoteWitness(tuple(address_from_text(a) for a in addresses)), tx)


# --- queries ------------------------------------------------------------------------------


@main.command()
@json_option
def status() -> None:
    """Show the node's view of the chain (chain_info)."""
    _show_object("chain", _env().call("chain_info"))


@main.command()
@click.argument("address", metavar="ADDR_OR_KEYNAME", type=ADDRESS)
@json_option
def account(address: str) -> None:
    """Show an account's balances (MUX and every asset it holds), stake and societies."""
    env = _env()
    obj = env.call("get_account", address)
    if env.as_json:
        _emit_json(obj)
        return
    held = obj.get("assets") if isinstance(obj, dict) else None
    units = {str(sym): env.asset_unit(str(sym)) for sym in held} \
        if isinstance(held, Mapping) else {}
    _print_object(f"account {address}", obj, Shape(assets=units))


@main.command()
@click.argument("society_id", metavar="SOCIETY", type=SOCIETY)
@click.argument("address", metavar="ADDR_OR_KEYNAME", type=ADDRESS)
@json_option
def member(society_id: str, address: str) -> None:
    """Show a member of SOCIETY: escrow, karma, totals."""
    env = _env()
    obj = env.call("get_member", society_id, address)
    standing = env.call_if_known("get_standing_pledge", society_id, address)
    if isinstance(obj, dict) and isinstance(standing, dict):
        obj = {**obj, "standing_pledge": standing}  # also in --json: one member, one answer
    shape = Shape() if env.as_json else Shape(asset=env.society_unit(society_id))
    _show_object(f"member {address} of {society_id}", obj, shape)


@main.command()
@click.argument("society_id", metavar="SOCIETY", type=SOCIETY)
@json_option
def claims(society_id: str) -> None:
    """List SOCIETY's claims, newest first (ids shortened: any unique prefix of 4 or more
    digits names a claim)."""
    env = _env()
    items = env.call("list_claims", society_id)
    if env.as_json:
        _emit_json(items)
        return
    rows = [dict(c, state=_claim_state(c),
                 subject=("(charity) " if c.get("kind") == "charity" else "")
                 + str(c.get("subject", ""))) for c in items if isinstance(c, dict)] \
        if isinstance(items, list) else items
    _print_rows(
        f"claims of {society_id}", rows,
        [Col("claim_id", "claim", "id"), Col("subject", "subject"),
         Col("amount", "amount", "num"), Col("received", "received", "num"),
         Col("state", "state", "word"), Col("closes_at", "closes (UTC)", "time")],
        Shape(asset=env.society_unit(society_id)),
    )


def _claim_state(c: Mapping[str, Any]) -> str:
    """A word or two for a claim's state in a table: "open" (voting), "approved" (open and
    can receive gifts), "withdrawn", or "closed: " and the outcome."""
    if c.get("status") == "open":
        return "approved" if c.get("approved") else "open"
    outcome = str(c.get("outcome", "?"))
    return outcome if outcome == "withdrawn" else f"closed: {outcome}"


@main.command()
@click.argument("height", type=click.IntRange(min=0, max=2**63 - 1))
@json_option
def block(height: int) -> None:
    """Show the block at HEIGHT."""
    _show_object(f"block {height}", _env().call("get_block", height))


@main.command("tx")
@click.argument("tx_id", type=TX_ID)
@json_option
def tx_cmd(tx_id: bytes) -> None:
    """Show a transaction's status and operation."""
    env = _env()
    obj = env.call("get_tx", tx_id.hex())
    if env.as_json:
        _emit_json(obj)
        return
    op = obj.get("op") if isinstance(obj, dict) else None
    _print_object(f"tx {tx_id.hex()}", obj, Shape(asset=_op_unit(op)))


def _op_unit(op: Any) -> Unit:
    """The unit of an op's amount as get_tx shows it: MUX, an asset's, or its society's."""
    if not isinstance(op, Mapping):
        return MUX_UNIT
    env = _env()
    try:
        if isinstance(op.get("symbol"), str):
            return env.asset_unit(op["symbol"])
        if op.get("type") == "create_society":  # the society may not exist (yet)
            return env.rules_unit(op.get("rules"))
        if isinstance(op.get("society"), str):
            return env.society_unit(op["society"])
        if isinstance(op.get("claim_id"), str):
            return env.society_unit(str(env.claim(op["claim_id"]).get("society")))
    except RpcError:
        pass  # a society or claim gone from view: show the numbers in MUX's precision
    return MUX_UNIT


@main.command()
@json_option
def witnesses() -> None:
    """List the registered witnesses and their votes."""
    _show_rows(
        "witnesses",
        _env().call("list_witnesses"),
        [Col("address", "address", "whole"), Col("votes", "votes", "num"),
         Col("active", "active", "num"), Col("missed", "missed", "num"), Col("url", "url")],
        Shape(votes_are_stake=True),
    )


# --- node administration ------------------------------------------------------------------


NODE_ID = HexType(32, "node_id")
PEER_ID = HexRefType("node_id", "node id")


def _peer_id(ref: str) -> str:
    """The full node id of the connected peer whose id starts with ``ref`` (the peers
    table shows 10 digits)."""
    if len(ref) == 64:
        return ref
    peers = _admin_read("peers")
    found = sorted({str(p["node_id"]) for p in peers if isinstance(p, dict)
                    and str(p.get("node_id", "")).startswith(ref)}) \
        if isinstance(peers, list) else []
    if len(found) == 1:
        return found[0]
    if not found:
        raise WalletError(f"no connected peer's node id starts with {ref!r}; give the full "
                          "id (64 hex digits)")
    raise BadInput(f"node id prefix {ref!r} is ambiguous; {len(found)} peers start with "
                   "it:\n" + "\n".join(f"  {f}" for f in found) + "\ngive more digits")


@dataclass
class AdminEnv:
    data_dir: Path


def _admin_url(data_dir: Path) -> str:
    env = _env()
    if env.rpc_explicit:
        return env.rpc_url
    try:
        return (data_dir / RPC_ADDR_FILE).read_text(encoding="utf-8").strip() or env.rpc_url
    except OSError:
        return env.rpc_url  # the node is not running, or writes no address file


def _admin_call(method: str, *params: Any) -> Any:
    """An admin method, with the token of --data-dir (never printed, never in an error)."""
    admin_env = click.get_current_context().find_object(AdminEnv)
    assert admin_env is not None
    path = admin_env.data_dir / TOKEN_FILE
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise WalletError(f"cannot read the node's RPC token {path} ({exc.strerror}); is "
                          "--data-dir the node's data directory, and has the node run "
                          "once?") from None
    url = _admin_url(admin_env.data_dir)
    env = _env()
    env.rpc_url = url  # error messages name the URL actually used
    with RpcClient(url, token=token) as client:
        return client.call(method, *params)


@main.group()
@click.option("--data-dir", required=True, metavar="DIR",
              type=click.Path(file_okay=False, path_type=Path),
              help="The node's data directory (token from DIR/rpc.token; URL from "
                   "DIR/rpc.addr unless --rpc or MUXER_RPC is given).")
@click.pass_context
def admin(ctx: click.Context, data_dir: Path) -> None:
    """Administer your own node: peers, bans, equivocation evidence."""
    ctx.obj = AdminEnv(data_dir)  # _env() still finds the root's Env further up


def _admin_read(method: str) -> Any:
    """A read-only method at the admin URL, without the token."""
    admin_env = click.get_current_context().find_object(AdminEnv)
    assert admin_env is not None
    env = _env()
    env.rpc_url = _admin_url(admin_env.data_dir)
    return env.call(method)


@admin.command("peers")
@json_option
def admin_peers() -> None:
    """List the node's connected peers ("blocks from": the lowest height a peer serves;
    above 1 it is pruned and cannot serve older blocks)."""
    _show_rows("peers", _admin_read("peers"),
               [Col("node_id", "node id", "id"), Col("address", "address", "whole"),
                Col("direction", "dir"), Col("head_height", "head", "num"),
                Col("lowest_block", "blocks from", "num")])


@admin.command("evidence")
@json_option
def admin_evidence() -> None:
    """List the equivocation evidence the node has found (newest last)."""
    _show_rows("evidence", _admin_read("list_evidence"),
               [Col("kind", "kind"), Col("witness", "witness", "whole"),
                Col("slot", "slot", "num")])


@admin.command("add-peer")
@click.argument("address", metavar="HOST:PORT")
@json_option
def admin_add_peer(address: str) -> None:
    """Have the node dial HOST:PORT (its p2p port)."""
    _show_object("add_peer", _admin_call("add_peer", address))


@admin.command("drop-peer")
@click.argument("node_ref", metavar="NODE_ID", type=PEER_ID)
@json_option
def admin_drop_peer(node_ref: str) -> None:
    """Disconnect the peer NODE_ID (64 hex digits, or a unique prefix among the connected
    peers); it may reconnect (ban it to keep it off)."""
    _show_object("drop_peer", _admin_call("drop_peer", _peer_id(node_ref)))


@admin.command("ban-peer")
@click.argument("node_ref", metavar="NODE_ID", type=PEER_ID)
@click.option("--seconds", type=click.IntRange(1, 10 * 365 * 86_400), default=None,
              help="How long (default: the node's p2p ban time, 3600 s).")
@json_option
def admin_ban_peer(node_ref: str, seconds: int | None) -> None:
    """Disconnect and ban the peer NODE_ID (64 hex digits, or a unique prefix among the
    connected peers; a peer not connected needs its full id)."""
    params: list[Any] = [_peer_id(node_ref)] + ([seconds] if seconds is not None else [])
    _show_object("ban_peer", _admin_call("ban_peer", *params))


@admin.command("unban-peer")
@click.argument("node_id", type=NODE_ID)
@json_option
def admin_unban_peer(node_id: bytes) -> None:
    """Lift a ban on NODE_ID."""
    _show_object("unban_peer", _admin_call("unban_peer", node_id.hex()))
