"""Helpers for tests that run real daemons as subprocesses on 127.0.0.1.

Every wait is bounded; every process started here is stopped by its own pid.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from click.testing import CliRunner

from muxernode.daemon import main as daemon_main

REPO = Path(__file__).resolve().parent.parent


def run_cli(*args: str) -> str:
    result = CliRunner().invoke(daemon_main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def make_genesis(out: Path, *, witnesses: int = 1, accounts: int = 10, interval: int = 1,
                 seed: int = 1, maintenance: int = 60, genesis_time: int | None = None) -> Path:
    args = ["genesis", "new", "--out", str(out), "--witnesses", str(witnesses),
            "--accounts", str(accounts), "--block-interval", str(interval),
            "--maintenance-interval", str(maintenance), "--seed", str(seed)]
    if genesis_time is not None:
        args += ["--genesis-time", str(genesis_time)]
    run_cli(*args)
    return out / "genesis.json"


def accounts(out: Path) -> list[dict[str, str]]:
    data: list[dict[str, str]] = json.loads((out / "accounts.json").read_text())
    return data


@dataclass
class Daemon:
    data_dir: Path
    witness_key: Path | None = None
    extra_args: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    url: str = ""
    log_path: Path | None = None

    def start(self, timeout: float = 20.0) -> str:
        addr_file = self.data_dir / "rpc.addr"
        addr_file.unlink(missing_ok=True)
        args = [sys.executable, "-m", "muxernode.daemon", "run", "--data-dir",
                str(self.data_dir), "--rpc", "127.0.0.1:0", *self.extra_args]
        if self.witness_key is not None:
            args += ["--witness-key", str(self.witness_key)]
        self.log_path = self.data_dir / "node.log"
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(args, cwd=REPO, stdout=log, stderr=log,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.proc.returncode}: {self.log()}")
            if addr_file.exists():
                text = addr_file.read_text().strip()
                if text:
                    self.url = text
                    return text
            time.sleep(0.02)
        self.kill()
        raise TimeoutError(f"daemon did not serve within {timeout} s: {self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:] if self.log_path else ""

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self, timeout: float = 15.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise
        return self.proc.returncode

    def rpc(self, method: str, *params: Any, timeout: float = 10.0) -> Any:
        return rpc(self.url, method, *params, timeout=timeout)


class RpcFailure(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error.get("message"))
        self.error = error


def rpc(url: str, method: str, *params: Any, timeout: float = 10.0) -> Any:
    r = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method,
                              "params": list(params)}, timeout=timeout)
    doc = r.json()
    if "error" in doc:
        raise RpcFailure(doc["error"])
    return doc["result"]


def rpc_batch(url: str, calls: list[tuple[str, list[Any]]], timeout: float = 30.0) -> list[Any]:
    """Batches of at most 500 calls per request; answers in call order (errors raise)."""
    out = []
    for start in range(0, len(calls), 500):
        part = calls[start:start + 500]
        body = [{"jsonrpc": "2.0", "id": i, "method": m, "params": p}
                for i, (m, p) in enumerate(part)]
        docs = httpx.post(url, json=body, timeout=timeout).json()
        if not isinstance(docs, list):
            raise RpcFailure(docs.get("error", {"message": repr(docs)}))
        by_id = {d["id"]: d for d in docs}
        for i in range(len(part)):
            d = by_id[i]
            if "error" in d:
                raise RpcFailure(d["error"])
            out.append(d["result"])
    return out


def wait_for(predicate: Any, timeout: float = 20.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError("condition not reached in time")
