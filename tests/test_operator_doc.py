"""docs/operator.md stays true: its config reference is the one generated from the schema,
every key is explained, every message in its troubleshooting table is one the code can
print, every alert is described, and every command it shows exists."""

from __future__ import annotations

import re
from pathlib import Path

import click

from muxernode.config import _SCHEMA
from muxernode.config_reference import HELP, _replace_table, reference_markdown
from muxernode.daemon import main as daemon_main

REPO = Path(__file__).resolve().parent.parent
DOC = (REPO / "docs" / "operator.md").read_text(encoding="utf-8")
SOURCES = "\n".join(p.read_text(encoding="utf-8")
                    for d in ("muxernode", "consensus", "storage", "p2p")
                    for p in sorted((REPO / d).rglob("*.py")))


def test_config_reference_is_generated_from_the_schema() -> None:
    assert _replace_table(DOC) == DOC, (
        "docs/operator.md's config reference is out of date: "
        "run python -m muxernode.config_reference")
    assert reference_markdown() in DOC


def test_every_key_is_explained_with_its_variable() -> None:
    keys = {f"{s}.{k}" for s, body in _SCHEMA.items() for k in body}
    assert set(HELP) == keys, (set(HELP) ^ keys)
    for key in keys:
        assert len(HELP[key]) > 20, key
        section, name = key.split(".")
        row = next(line for line in DOC.splitlines() if line.startswith(f"| `{key}` |"))
        assert f"`MUXER_{section.upper()}_{name.upper()}`" in row


def test_troubleshooting_messages_are_ones_the_code_prints() -> None:
    section = DOC.split("## Troubleshooting", 1)[1]
    messages = re.findall(r"^\| `([^`]+)` \|", section, re.M)
    assert len(messages) >= 12
    for message in messages:
        # placeholders (HOST:PORT) stand for an f-string's fields: each literal part is
        # in the source
        parts = [p.strip() for p in re.split(r"\b[A-Z0-9]*[A-Z][A-Z0-9]*(?::[A-Z]+)?\b|error: ",
                                              message)]
        parts = [p for p in parts if len(p) >= 6]
        assert parts, message
        for part in parts:
            assert part in SOURCES, f"{part!r} (troubleshooting) is printed nowhere"


def test_every_alert_is_described() -> None:
    rules = (REPO / "deploy" / "prometheus" / "alerts.yml").read_text()
    alerts = set(re.findall(r"- alert: (\w+)", rules))
    section = DOC.split("## Alerts that matter", 1)[1].split("\n## ", 1)[0]
    described = set(re.findall(r"^\| `(\w+)` \(", section, re.M))
    assert alerts == described and len(alerts) >= 8


def test_commands_shown_exist() -> None:
    shown = set(re.findall(r"\bmuxernode ((?:[a-z]+)(?: [a-z]+)?)", DOC))
    assert {"init", "run", "config check", "snapshot export"} <= {
        s if s.split()[0] in ("config", "snapshot", "genesis") else s.split()[0]
        for s in shown}
    for text in shown:
        words = text.split()
        cmd = daemon_main.commands.get(words[0])
        if cmd is None:
            continue  # prose: "muxernode writes ..."
        if isinstance(cmd, click.Group) and len(words) > 1:
            assert words[1] in cmd.commands, text
    for flag in re.findall(r"muxernode [a-z ]+?(--[a-z-]+)", DOC):
        assert any(flag in p.opts for c in _all_commands() for p in c.params), flag


def _all_commands() -> list[click.Command]:
    out: list[click.Command] = []
    for cmd in daemon_main.commands.values():
        out.append(cmd)
        if isinstance(cmd, click.Group):
            out.extend(cmd.commands.values())
    return out
