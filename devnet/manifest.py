"""The devnet directory and its manifest, ``<dir>/devnet.json`` (protocol section 10).

Layout of a devnet directory::

    devnet.json            the manifest (section 10, plus the extra keys below)
    genesis/               genesis.json, w1.key .. wN.key, accounts.json (muxernode genesis new)
    nodes/<name>/          the node's data dir: db/, genesis.json, rpc.addr (the node's own),
                           config.toml, witness.key, node.log (written by the devnet)
    proxy/                 routes.json, control.json, state.json, proxy.log (devnet.proxy)
    metrics.jsonl          one status sample per line (up, status --watch, load, report)
    load/                  one JSON result file per load run
    report.md, *.png       written by ``report``

Section 10 fields come first in the JSON; extras are per node ``config``, ``log``,
``witness_key``, ``peers`` (the proxy addresses its config lists), ``rpc_listen``,
``region`` (topology), ``netns`` (its namespace with --netns) and ``clock_offset_s``, and a
top-level ``devnet`` object (format version, creation time, directory, proxy pid and files,
genesis parameters used, ``topology`` with the per-pair shapes, ``seed``, ``netns`` with
every namespace, link and address --netns makes). Every write goes through a temporary
file and ``os.replace``, so a reader never sees half a manifest.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "MANIFEST",
    "Account",
    "DevnetError",
    "Manifest",
    "NodeEntry",
    "default_dir",
    "load_manifest",
    "read_toml",
]

MANIFEST = "devnet.json"
FORMAT = 1
_write_lock = threading.Lock()


class DevnetError(Exception):
    """A devnet operation that cannot go on; the message says what to do."""


def default_dir() -> Path:
    """``.devnet`` in the repository root (where pyproject.toml is), else in the cwd."""
    repo = Path(__file__).resolve().parent.parent
    if (repo / "pyproject.toml").exists():
        return repo / ".devnet"
    return Path.cwd() / ".devnet"


@dataclass
class Account:
    name: str
    address: str
    secret: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "address": self.address, "secret": self.secret}


@dataclass
class NodeEntry:
    name: str
    rpc_url: str
    p2p: str
    data_dir: str
    pid: int | None
    witness: str | None
    config: str = ""
    log: str = ""
    witness_key: str | None = None
    peers: list[str] = field(default_factory=list)
    rpc_listen: str = ""
    region: str = ""  # the topology region the node sits in
    netns: str = ""  # the network namespace it runs in (--netns), else ""
    clock_offset_s: float = 0.0  # added to the node's clock (daemon --clock-offset)
    state_sync: bool = False  # started with --state-sync (``devnet add --state-sync``)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "rpc_url": self.rpc_url, "p2p": self.p2p,
                "data_dir": self.data_dir, "pid": self.pid, "witness": self.witness,
                "config": self.config, "log": self.log, "witness_key": self.witness_key,
                "peers": self.peers, "rpc_listen": self.rpc_listen, "region": self.region,
                "netns": self.netns, "clock_offset_s": self.clock_offset_s,
                "state_sync": self.state_sync}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> NodeEntry:
        return cls(name=d["name"], rpc_url=d["rpc_url"], p2p=d["p2p"], data_dir=d["data_dir"],
                   pid=d.get("pid"), witness=d.get("witness"), config=d.get("config", ""),
                   log=d.get("log", ""), witness_key=d.get("witness_key"),
                   peers=list(d.get("peers", [])), rpc_listen=d.get("rpc_listen", ""),
                   region=d.get("region", ""), netns=d.get("netns", ""),
                   clock_offset_s=float(d.get("clock_offset_s", 0.0)),
                   state_sync=bool(d.get("state_sync", False)))


@dataclass
class Manifest:
    dir: Path
    chain_id: str
    genesis: str
    block_interval_s: int
    nodes: list[NodeEntry]
    accounts: list[Account]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return self.dir / MANIFEST

    @property
    def proxy_dir(self) -> Path:
        return self.dir / "proxy"

    @property
    def proxy_pid(self) -> int | None:
        pid = self.extra.get("proxy", {}).get("pid")
        return pid if isinstance(pid, int) else None

    @proxy_pid.setter
    def proxy_pid(self, pid: int | None) -> None:
        self.extra.setdefault("proxy", {})["pid"] = pid

    def node(self, name: str) -> NodeEntry:
        for n in self.nodes:
            if n.name == name:
                return n
        raise DevnetError(f"no node {name!r} in this devnet; nodes are "
                          f"{', '.join(n.name for n in self.nodes)}")

    def nodes_named(self, spec: str | list[str]) -> list[NodeEntry]:
        """'all', 'n1', 'n1,n2' or a list of names -> entries (errors name the bad one)."""
        names = spec if isinstance(spec, list) else [s.strip() for s in spec.split(",")]
        if names == ["all"]:
            return list(self.nodes)
        return [self.node(n) for n in names if n]

    def account(self, name: str) -> Account:
        for a in self.accounts:
            if a.name == name:
                return a
        raise DevnetError(f"no account {name!r}; accounts are a1..a{len(self.accounts)}")

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "chain_id": self.chain_id,
            "genesis": self.genesis,
            "block_interval_s": self.block_interval_s,
            "nodes": [n.to_json() for n in self.nodes],
            "accounts": [a.to_json() for a in self.accounts],
        }
        doc["devnet"] = {"format": FORMAT, **self.extra}
        return doc

    def save(self) -> None:
        with _write_lock:
            self.dir.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{MANIFEST}.{os.getpid()}.{threading.get_ident()}.tmp")
            # the manifest holds account secrets: owner-only, like accounts.json
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(self.to_json(), f, indent=2)
                f.write("\n")
            os.replace(tmp, self.path)

    def reload_pids(self) -> None:
        """Take node and proxy pids from the file (another devnet command may have changed
        them since this one read it)."""
        fresh = load_manifest(self.dir)
        by_name = {n.name: n for n in fresh.nodes}
        for n in self.nodes:
            f = by_name.get(n.name)
            if f is not None:
                n.pid = f.pid
                n.clock_offset_s = f.clock_offset_s
        self.proxy_pid = fresh.proxy_pid


def read_toml(path: str | Path, what: str) -> dict[str, Any]:
    """A TOML file (a scenario, a topology) or a DevnetError naming ``what`` it is."""
    import tomllib

    p = Path(path)
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DevnetError(f"cannot read {what} {p}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise DevnetError(f"{what} {p} is not valid TOML: {exc}") from None


def load_manifest(directory: str | Path) -> Manifest:
    d = Path(directory).resolve()
    path = d / MANIFEST
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DevnetError(
            f"no devnet in {d} (no {MANIFEST}); start one with: python -m devnet up --dir {d}"
        ) from None
    except (OSError, ValueError) as exc:
        raise DevnetError(f"cannot read {path}: {exc}") from None
    try:
        extra = dict(doc.get("devnet") or {})
        extra.pop("format", None)
        return Manifest(
            dir=d,
            chain_id=doc["chain_id"],
            genesis=doc["genesis"],
            block_interval_s=int(doc["block_interval_s"]),
            nodes=[NodeEntry.from_json(n) for n in doc["nodes"]],
            accounts=[Account(a["name"], a["address"], a["secret"]) for a in doc["accounts"]],
            extra=extra,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise DevnetError(f"{path} is not a devnet manifest ({type(exc).__name__}: {exc})") \
            from None
