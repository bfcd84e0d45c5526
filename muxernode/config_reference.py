"""Every configuration key explained, the reference table of docs/operator.md generated
from the schema, and ``muxernode config check``.

The schema (sections, keys, types) is muxernode/config.py's; this module adds a sentence
per key. tests/test_operator_doc.py fails when a key has no sentence here or when the
table in docs/operator.md differs from ``reference_markdown()``: regenerate it with
``python -m muxernode.config_reference``.
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any

from muxernode.config import (
    _SCHEMA,
    ConfigError,
    NodeConfig,
    env_var,
    load_config,
    read_config_file,
    set_key,
)
from muxernode.logs import LogLevelError, parse_levels

__all__ = ["HELP", "check_config", "reference_markdown", "schema_rows"]

HELP: dict[str, str] = {
    "rpc.listen": "HOST:PORT of the JSON-RPC server, `/health`, `/metrics` and `/ws`. "
                  "Loopback unless you mean to expose it (admin methods need the token in "
                  "`<data dir>/rpc.token`). Port 0: the kernel picks one, written to "
                  "`<data dir>/rpc.addr`. Flag `--rpc`.",
    "rpc.max_body_bytes": "Largest HTTP request body; a larger one is answered 413.",
    "rpc.max_batch": "Most calls in one JSON-RPC batch.",
    "rpc.max_connections": "Open HTTP connections; beyond it new ones get 503 and are closed.",
    "rpc.max_concurrent": "Requests in progress at once; beyond it 503.",
    "p2p.listen": "HOST:PORT the node accepts peers on. Port 0: any free port (a witness or "
                  "a seed node wants a fixed one). Flag `--p2p`.",
    "p2p.peers": "HOST:PORT of the peers to dial at start (seeds); more are learned by "
                 "peer exchange. Flag `--peer` (repeatable, added to these); in the "
                 "environment a comma-separated list.",
    "witness.key_file": "File holding the witness's 32-byte signing seed in hex, mode 0600 "
                        "and owned by the node's user (the node refuses a key others can "
                        "read). Empty: the node does not produce or vote. Flag "
                        "`--witness-key`.",
    "log.format": "`text` (key=value, one line per event) or `json` (one object per line, "
                  "for log shippers). Flag `--log-format`.",
    "log.level": 'A level (`debug`, `info`, `warning`, `error`), per-module levels, or both: '
                 '`"info,p2p=debug,rpc=warning"`. Flag `--log-level`.',
    "history.enabled": "Keep the account-history index that `get_history` reads; off, that "
                       "method answers -32002. Flag `--no-history`.",
    "sync.verify_all_signatures": "Check every tx signature of the blocks synced from "
                                  "peers. Off (the default), the signatures inside blocks "
                                  "that the synced range's own finality votes make final "
                                  "are not checked again, as Bitcoin Core's assumevalid "
                                  "skips script checks (docs/security.md, Sync from final "
                                  "blocks). Flag `--verify-all-signatures`.",
    "storage.keep_blocks": "0 keeps every block (an archive node). N (at least 16) prunes "
                           "the blocks below the last N, their index entries and history, "
                           "and compacts the database so its size stays flat; state, the "
                           "final block and what finality needs stay. Older heights answer "
                           "-32006 and peers are told the lowest height served "
                           "(docs/operator.md, Pruning). Flag `--keep-blocks`.",
    "limits.mempool_txs": "Most txs the mempool holds.",
    "limits.mempool_bytes": "Most bytes the mempool holds.",
    "limits.verify_threads": "Threads checking signatures (one per core; libsodium releases "
                             "the GIL).",
    "limits.block_txs": "Most txs in a block this node produces.",
}


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | list):
        return json.dumps(value)
    return str(value)


def _defaults() -> dict[str, Any]:
    cfg = NodeConfig()
    out = {f.name: getattr(cfg, f.name) for f in fields(cfg)}
    out["rpc"] = f"{cfg.rpc_host}:{cfg.rpc_port}"
    out["p2p"] = f"{cfg.p2p_host}:{cfg.p2p_port}"
    return out


def schema_rows() -> list[tuple[str, str, str, str]]:
    """(section.key, default as TOML, environment variable, explanation) per key."""
    defaults = _defaults()
    rows = []
    for section, keys in _SCHEMA.items():
        for key, (attr, _typ) in keys.items():
            name = f"{section}.{key}"
            rows.append((name, _toml(defaults[attr]), env_var(section, key), HELP.get(name, "")))
    return rows


def reference_markdown() -> str:
    lines = ["| key | default | environment | what |", "|---|---|---|---|"]
    for name, default, env, text in schema_rows():
        lines.append(f"| `{name}` | `{default}` | `{env}` | {text} |")
    return "\n".join(lines) + "\n"


def check_config(path: str | Path) -> tuple[NodeConfig | None, list[str]]:
    """The config ``run`` would use with this file (and the environment), and every
    problem found; (cfg, []) when it is usable."""
    try:
        doc = read_config_file(path)
    except ConfigError as exc:
        return None, [str(exc)]
    problems: list[str] = []
    scratch = NodeConfig()
    for section, body in doc.items():
        for key, value in body.items():
            try:
                set_key(scratch, section, key, value)
            except ConfigError as exc:
                problems.append(str(exc))
    if problems:
        return None, problems
    try:
        cfg = load_config(path)  # the environment's MUXER_* variables too
    except ConfigError as exc:
        return None, [str(exc)]
    try:
        parse_levels(cfg.log_level)
    except LogLevelError as exc:
        problems.append(f"log.level: {exc}")
    if cfg.witness_key_file:
        from muxernode.node import NodeError, load_witness_key

        try:
            load_witness_key(cfg.witness_key_file)
        except NodeError as exc:
            problems.append(f"witness.key_file: {exc}")
    for name in ("verify_threads", "block_txs", "mempool_txs", "mempool_bytes"):
        if getattr(cfg, name) == 0:
            problems.append(f"limits.{name} must be at least 1")
    return (cfg if not problems else None), problems


def _replace_table(doc: str) -> str:
    """docs/operator.md with its generated table (between the markers) brought up to date."""
    start, end = "<!-- config-reference-start -->\n", "<!-- config-reference-end -->"
    head, sep, rest = doc.partition(start)
    if not sep or end not in rest:
        raise ValueError("docs/operator.md has no config reference markers")
    return head + start + reference_markdown() + end + rest.split(end, 1)[1]


if __name__ == "__main__":
    target = Path(__file__).resolve().parent.parent / "docs" / "operator.md"
    target.write_text(_replace_table(target.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"updated the config reference in {target}")
