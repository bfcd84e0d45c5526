"""Node configuration: a TOML file, every key optional, with these defaults.

    [rpc]
    listen = "127.0.0.1:8545"      # RPC binds loopback unless configured otherwise
    max_body_bytes = 1048576
    max_batch = 1000
    max_connections = 256           # open connections; beyond: 503 and closed
    max_concurrent = 256            # requests in progress; beyond: 503

    [p2p]
    listen = "127.0.0.1:0"
    peers = []                      # "host:port" seeds

    [witness]
    key_file = ""                   # a file holding the 32-byte seed in hex, mode 0600

    [log]
    format = "text"                 # or "json"
    level = "info"                  # or per module: "info,p2p=debug,rpc=warning"

    [history]
    enabled = true                  # the account-history index (get_history); --no-history

    [storage]
    keep_blocks = 0                 # 0: every block; N >= 16: prune all but the last N

    [sync]
    verify_all_signatures = false   # re-check tx signatures in final blocks synced;
                                    # --verify-all-signatures

    [limits]
    mempool_txs = 10000
    mempool_bytes = 67108864
    verify_threads = 2
    block_txs = 10000               # most txs in a block this node produces
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["MIN_KEEP_BLOCKS", "ConfigError", "NodeConfig", "check_keep_blocks", "env_var",
           "load_config", "parse_hostport", "read_config_file", "set_key"]


class ConfigError(ValueError):
    """A configuration file or option that cannot be used; the message says which key."""


def parse_hostport(text: str, what: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{what} must be host:port, got {text!r}")
    return host, int(port)


# the fewest blocks a pruning node keeps: a fork switch, a peer catching up and a peer's
# state sync (the undo records above the final block) all read the last blocks
MIN_KEEP_BLOCKS = 16


def check_keep_blocks(n: int, what: str) -> int:
    if n != 0 and n < MIN_KEEP_BLOCKS:
        raise ConfigError(f"{what} must be 0 (keep every block) or at least "
                          f"{MIN_KEEP_BLOCKS}, got {n}")
    return n


@dataclass
class NodeConfig:
    rpc_host: str = "127.0.0.1"
    rpc_port: int = 8545
    max_body_bytes: int = 1 << 20
    max_batch: int = 1000
    max_connections: int = 256
    max_concurrent: int = 256
    p2p_host: str = "127.0.0.1"
    p2p_port: int = 0
    peers: list[str] = field(default_factory=list)
    witness_key_file: str = ""
    log_format: str = "text"
    log_level: str = "info"
    mempool_txs: int = 10_000
    mempool_bytes: int = 64 << 20
    verify_threads: int = 2
    block_txs: int = 10_000
    history: bool = True
    verify_all_signatures: bool = False
    keep_blocks: int = 0


_SCHEMA: dict[str, dict[str, tuple[str, type]]] = {
    "rpc": {"listen": ("rpc", str), "max_body_bytes": ("max_body_bytes", int),
            "max_batch": ("max_batch", int),
            "max_connections": ("max_connections", int),
            "max_concurrent": ("max_concurrent", int)},
    "p2p": {"listen": ("p2p", str), "peers": ("peers", list)},
    "witness": {"key_file": ("witness_key_file", str)},
    "log": {"format": ("log_format", str), "level": ("log_level", str)},
    "history": {"enabled": ("history", bool)},
    "sync": {"verify_all_signatures": ("verify_all_signatures", bool)},
    "storage": {"keep_blocks": ("keep_blocks", int)},
    "limits": {"mempool_txs": ("mempool_txs", int), "mempool_bytes": ("mempool_bytes", int),
               "verify_threads": ("verify_threads", int),
               "block_txs": ("block_txs", int)},
}


def _typed(value: Any, typ: type, what: str) -> Any:
    if type(value) is not typ:
        raise ConfigError(f"{what} must be a {typ.__name__}")
    return value


def env_var(section: str, key: str) -> str:
    """The environment variable that sets section.key (over the file, under the flags)."""
    return f"MUXER_{section.upper()}_{key.upper()}"


def _from_env(text: str, typ: type, name: str) -> Any:
    if typ is int:
        if not text.strip().isdigit():
            raise ConfigError(f"{name} must be a non-negative integer, got {text!r}")
        return int(text)
    if typ is bool:
        if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise ConfigError(f"{name} must be true or false, got {text!r}")
        return text.lower() in ("true", "1", "yes")
    if typ is list:  # comma-separated
        return [part.strip() for part in text.split(",") if part.strip()]
    return text


def set_key(cfg: NodeConfig, section: str, key: str, value: Any) -> None:
    """Check one value against the schema and set it (the message names the key)."""
    keys = _SCHEMA.get(section)
    if keys is None:
        raise ConfigError(f"unknown config section [{section}]")
    spec = keys.get(key)
    if spec is None:
        raise ConfigError(f"unknown config key {section}.{key}")
    attr, typ = spec
    value = _typed(value, typ, f"{section}.{key}")
    if attr == "rpc":
        cfg.rpc_host, cfg.rpc_port = parse_hostport(value, "rpc.listen")
    elif attr == "p2p":
        cfg.p2p_host, cfg.p2p_port = parse_hostport(value, "p2p.listen")
    else:
        if typ is int and value < 0:
            raise ConfigError(f"{section}.{key} must not be negative")
        if attr == "keep_blocks":
            check_keep_blocks(value, f"{section}.{key}")
        if typ is list:
            for item in value:
                if not isinstance(item, str):
                    raise ConfigError(f"{section}.{key} must be a list of strings")
                parse_hostport(item, f"each of {section}.{key}")
        setattr(cfg, attr, value)


def read_config_file(path: str | Path) -> dict[str, Any]:
    try:
        doc: dict[str, Any] = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {path} is not valid TOML: {exc}") from None
    for section, body in doc.items():
        if section not in _SCHEMA or not isinstance(body, dict):
            raise ConfigError(f"unknown config section [{section}]")
    return doc


def load_config(path: str | Path | None, env: Mapping[str, str] | None = None) -> NodeConfig:
    """Defaults, then the file's keys, then MUXER_<SECTION>_<KEY> variables of ``env``
    (the process environment unless given); command-line flags are applied after."""
    cfg = NodeConfig()
    if path is not None:
        for section, body in read_config_file(path).items():
            for key, value in body.items():
                set_key(cfg, section, key, value)
    environ = os.environ if env is None else env
    for section, keys in _SCHEMA.items():
        for key, (_attr, typ) in keys.items():
            name = env_var(section, key)
            if name in environ:
                try:
                    set_key(cfg, section, key, _from_env(environ[name], typ, name))
                except ConfigError as exc:
                    raise ConfigError(f"{exc} (from the environment variable {name})") from None
    if cfg.log_format not in ("text", "json"):
        raise ConfigError("log.format must be 'text' or 'json'")
    return cfg
