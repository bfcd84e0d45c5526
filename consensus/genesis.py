"""Genesis files and the chain id (protocol section 2).

chain_id = H(packb([1, chain_name, genesis_time, [params in fixed order],
                    [[address, signing_key], ...], [[address, amount], ...]]))
Lists are taken in file order. Params a genesis omits take the production defaults.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from consensus.codec import encode
from consensus.crypto import AddressError, address_from_text, address_to_text, sha256

__all__ = ["DEFAULT_PARAMS", "Genesis", "GenesisError", "Params", "load_genesis"]

MAX_AMOUNT = 2**63 - 1


class GenesisError(ValueError):
    """A genesis file that does not follow protocol section 2."""


@dataclass(frozen=True, slots=True)
class Params:
    block_interval_s: int = 3
    active_witnesses: int = 21
    maintenance_interval_s: int = 3600
    max_block_bytes: int = 2097152
    max_tx_bytes: int = 8192
    max_tx_lifetime_s: int = 3600
    base_fee: int = 1000

    def as_list(self) -> list[int]:
        return [
            self.block_interval_s,
            self.active_witnesses,
            self.maintenance_interval_s,
            self.max_block_bytes,
            self.max_tx_bytes,
            self.max_tx_lifetime_s,
            self.base_fee,
        ]

    def as_json(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in PARAM_NAMES}


PARAM_NAMES = (
    "block_interval_s",
    "active_witnesses",
    "maintenance_interval_s",
    "max_block_bytes",
    "max_tx_bytes",
    "max_tx_lifetime_s",
    "base_fee",
)
DEFAULT_PARAMS = Params()


@dataclass(frozen=True, slots=True)
class GenesisWitness:
    name: str
    address: bytes
    signing_key: bytes


@dataclass(frozen=True, slots=True)
class Genesis:
    chain_name: str
    genesis_time: int
    params: Params
    witnesses: tuple[GenesisWitness, ...]
    balances: tuple[tuple[bytes, int], ...]
    chain_id: bytes

    @property
    def supply(self) -> int:
        return sum(amount for _, amount in self.balances)

    def to_json(self) -> dict[str, Any]:
        return {
            "chain_name": self.chain_name,
            "genesis_time": self.genesis_time,
            "params": self.params.as_json(),
            "witnesses": [
                {"name": w.name, "address": address_to_text(w.address),
                 "signing_key": w.signing_key.hex()}
                for w in self.witnesses
            ],
            "balances": [
                {"address": address_to_text(a), "amount": amount} for a, amount in self.balances
            ],
        }


def compute_chain_id(
    chain_name: str,
    genesis_time: int,
    params: Params,
    witnesses: tuple[GenesisWitness, ...],
    balances: tuple[tuple[bytes, int], ...],
) -> bytes:
    return sha256(
        encode(
            [
                1,
                chain_name,
                genesis_time,
                params.as_list(),
                [[w.address, w.signing_key] for w in witnesses],
                [[a, amount] for a, amount in balances],
            ]
        )
    )


def _int(value: Any, what: str, lo: int = 0, hi: int = MAX_AMOUNT) -> int:
    if type(value) is not int or not lo <= value <= hi:
        raise GenesisError(f"{what} must be an integer in [{lo}, {hi}], got {value!r}")
    return value


def parse_genesis(doc: Any) -> Genesis:
    if not isinstance(doc, dict):
        raise GenesisError("a genesis file is a JSON object")
    name = doc.get("chain_name")
    if not isinstance(name, str) or not name:
        raise GenesisError("chain_name must be a non-empty string")
    gtime = _int(doc.get("genesis_time"), "genesis_time")
    raw_params = doc.get("params", {})
    if not isinstance(raw_params, dict):
        raise GenesisError("params must be an object")
    unknown = set(raw_params) - set(PARAM_NAMES)
    if unknown:
        raise GenesisError(f"unknown params: {sorted(unknown)}")
    values = {k: _int(v, f"params.{k}", 1) for k, v in raw_params.items()}
    params = Params(**values)
    raw_witnesses = doc.get("witnesses", [])
    if not isinstance(raw_witnesses, list):
        raise GenesisError("witnesses must be an array")
    witnesses: list[GenesisWitness] = []
    for i, w in enumerate(raw_witnesses):
        if not isinstance(w, dict):
            raise GenesisError(f"witnesses[{i}] must be an object")
        try:
            address = address_from_text(w.get("address", ""))
            key = bytes.fromhex(w.get("signing_key", ""))
        except (AddressError, ValueError, TypeError) as exc:
            raise GenesisError(f"witnesses[{i}]: {exc}") from None
        if len(key) != 32:
            raise GenesisError(f"witnesses[{i}].signing_key must be 64 hex digits")
        witnesses.append(GenesisWitness(str(w.get("name", f"w{i + 1}")), address, key))
    if not witnesses:
        raise GenesisError("a genesis needs at least one witness")
    if len({w.address for w in witnesses}) != len(witnesses):
        raise GenesisError("witness addresses must be distinct")
    raw_balances = doc.get("balances", [])
    if not isinstance(raw_balances, list):
        raise GenesisError("balances must be an array")
    balances: list[tuple[bytes, int]] = []
    total = 0
    for i, b in enumerate(raw_balances):
        if not isinstance(b, dict):
            raise GenesisError(f"balances[{i}] must be an object")
        try:
            address = address_from_text(b.get("address", ""))
        except AddressError as exc:
            raise GenesisError(f"balances[{i}]: {exc}") from None
        amount = _int(b.get("amount"), f"balances[{i}].amount", 1)
        total += amount
        balances.append((address, amount))
    if total > MAX_AMOUNT:
        raise GenesisError("the genesis supply exceeds 2**63 - 1 units")
    wt, bt = tuple(witnesses), tuple(balances)
    return Genesis(name, gtime, params, wt, bt, compute_chain_id(name, gtime, params, wt, bt))


def load_genesis(path: str | Path) -> Genesis:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise GenesisError(f"cannot read genesis file {path}: {exc.strerror}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise GenesisError(f"genesis file {path} is not valid JSON: {exc}") from None
    return parse_genesis(doc)
