"""A small synchronous JSON-RPC client for the devnet (protocol section 9), with batches.

The devnet talks to nodes only over their public interfaces: ``POST /rpc`` (single calls
and batches), ``GET /health`` and ``GET /metrics``. Failures are of two kinds:

- ``RpcError``: the node answered with a JSON-RPC error (``reason`` is ``data.reason`` of a
  rejected transaction, -32000);
- ``NodeUnreachable``: nothing (or nothing JSON-RPC) answered in time.
"""

from __future__ import annotations

import itertools
import ssl
import threading
from types import TracebackType
from typing import Any

import httpx

__all__ = ["NodeRpc", "NodeUnreachable", "RpcError", "parse_metrics"]

MAX_BATCH = 500  # well under the node's default max_batch (1000)

_ssl_lock = threading.Lock()
_ssl_context: ssl.SSLContext | None = None


def _shared_ssl_context() -> ssl.SSLContext:
    """One TLS context for every client: httpx builds one per client otherwise (loading the
    CA bundle, ~25 ms of CPU), and status polling makes a client per node per second, which
    was most of a 21-node bench's own CPU. Devnet URLs are plain HTTP; it is never used
    there, but an https URL still gets normal verification."""
    global _ssl_context
    with _ssl_lock:
        if _ssl_context is None:
            _ssl_context = ssl.create_default_context()
        return _ssl_context


class RpcError(Exception):
    """A JSON-RPC error object answered by the node."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.data = data

    @property
    def reason(self) -> str:
        """``data.reason`` of a rejected tx, else a short name for the error code."""
        if isinstance(self.data, dict) and isinstance(self.data.get("reason"), str):
            return str(self.data["reason"])
        return {-32001: "not_found", -32602: "invalid_params"}.get(self.code, f"rpc_{self.code}")

    @classmethod
    def from_obj(cls, err: Any) -> RpcError:
        if not isinstance(err, dict):
            return cls(0, f"malformed error {err!r:.80}")
        code = err.get("code")
        msg = err.get("message")
        return cls(code if type(code) is int else 0, msg if isinstance(msg, str) else "error",
                   err.get("data"))


class NodeUnreachable(Exception):
    """No JSON-RPC answer from the node (refused, timed out, not a MUXER node)."""


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text -> {sample name (with labels as written): value}; comments skipped."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        try:
            out[name] = float(value)
        except ValueError:
            continue
    return out


class NodeRpc:
    """``NodeRpc("http://127.0.0.1:PORT/rpc").call("chain_info")``. Not shared across threads."""

    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        self.url = url
        self.base = url[: -len("/rpc")] if url.endswith("/rpc") else url.rstrip("/")
        self.timeout = timeout
        # trust_env=False: never route devnet traffic through a proxy from the environment
        self._http = httpx.Client(timeout=timeout, trust_env=False,
                                  verify=_shared_ssl_context())
        self._ids = itertools.count(1)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> NodeRpc:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _post(self, body: Any) -> Any:
        try:
            resp = self._http.post(self.url, json=body)
        except httpx.HTTPError as exc:
            raise NodeUnreachable(f"cannot reach {self.url}: {type(exc).__name__}: {exc}") \
                from None
        try:
            return resp.json()
        except ValueError:
            raise NodeUnreachable(
                f"{self.url} answered HTTP {resp.status_code}, not JSON-RPC") from None

    def call(self, method: str, *params: Any) -> Any:
        req_id = next(self._ids)
        doc = self._post({"jsonrpc": "2.0", "id": req_id, "method": method,
                          "params": list(params)})
        if not isinstance(doc, dict):
            raise NodeUnreachable(f"{self.url} did not answer a JSON-RPC object")
        if "error" in doc:
            raise RpcError.from_obj(doc["error"])
        if "result" not in doc:
            raise NodeUnreachable(f"{self.url} answered without a result")
        return doc["result"]

    def batch(self, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        """Results in call order; a failed call's slot holds its ``RpcError`` (not raised)."""
        out: list[Any] = []
        for start in range(0, len(calls), MAX_BATCH):
            part = calls[start : start + MAX_BATCH]
            base = next(self._ids) * 100_000
            body = [{"jsonrpc": "2.0", "id": base + i, "method": m, "params": p}
                    for i, (m, p) in enumerate(part)]
            docs = self._post(body)
            if isinstance(docs, dict) and "error" in docs:
                raise RpcError.from_obj(docs["error"])
            if not isinstance(docs, list):
                raise NodeUnreachable(f"{self.url} did not answer the batch with an array")
            by_id = {d.get("id"): d for d in docs if isinstance(d, dict)}
            for i in range(len(part)):
                d = by_id.get(base + i)
                if d is None:
                    out.append(RpcError(0, "no answer for this call in the batch"))
                elif "error" in d:
                    out.append(RpcError.from_obj(d["error"]))
                else:
                    out.append(d.get("result"))
        return out

    def health(self) -> bool:
        """True iff GET /health answers 200 (the node says it is in sync)."""
        try:
            return self._http.get(self.base + "/health").status_code == 200
        except httpx.HTTPError:
            return False

    def metrics(self) -> dict[str, float]:
        try:
            resp = self._http.get(self.base + "/metrics")
        except httpx.HTTPError as exc:
            raise NodeUnreachable(f"cannot reach {self.base}/metrics: {exc}") from None
        if resp.status_code != 200:
            raise NodeUnreachable(f"{self.base}/metrics answered HTTP {resp.status_code}")
        return parse_metrics(resp.text)
