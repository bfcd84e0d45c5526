"""A small synchronous JSON-RPC 2.0 client for the node's RPC (protocol section 9).

One call per HTTP request (``POST /rpc``, params as an array). Three kinds of failure, so
that the wallet can word each one:

- ``RpcError(code, message, data)``: the node answered with a JSON-RPC error (-32000 is a
  rejected transaction with ``data.reason``; -32001 is "not found" with ``data.what``;
  -32003 is an admin call without the right token).
- ``RpcUnreachable``: no answer at all ("cannot reach node at URL"), or none in time.
- ``RpcProtocolError``: an answer that is not a JSON-RPC response (wrong URL, a proxy, an
  HTTP error status such as 503 when the node is busy).
"""

from __future__ import annotations

import itertools
import os
from types import TracebackType
from typing import Any

import httpx

__all__ = [
    "DEFAULT_RPC_URL",
    "ENV_RPC",
    "RpcClient",
    "RpcClientError",
    "RpcError",
    "RpcProtocolError",
    "RpcUnreachable",
    "resolve_rpc_url",
]

DEFAULT_RPC_URL = "http://127.0.0.1:8545/rpc"  # the node's default [rpc] listen
ENV_RPC = "MUXER_RPC"


def resolve_rpc_url(option: str | None) -> str:
    """--rpc if given, else MUXER_RPC, else the default."""
    return option or os.environ.get(ENV_RPC) or DEFAULT_RPC_URL


class RpcClientError(Exception):
    """Base of the client's failures."""


class RpcError(RpcClientError):
    """A JSON-RPC error object from the node."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.data = data

    @property
    def reason(self) -> str | None:
        """``data.reason`` of a rejected transaction (-32000), else None."""
        if isinstance(self.data, dict) and isinstance(self.data.get("reason"), str):
            return str(self.data["reason"])
        return None


class RpcUnreachable(RpcClientError):
    """Nothing answered at the URL (refused, unresolvable, timed out)."""


class RpcProtocolError(RpcClientError):
    """Something answered, but not with a JSON-RPC response."""


class RpcClient:
    """``RpcClient(url).call("get_account", "mx…")``; use as a context manager or close()."""

    def __init__(
        self,
        url: str = DEFAULT_RPC_URL,
        *,
        timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        token: str | None = None,
    ) -> None:
        """``token``: the node's admin token (``<data_dir>/rpc.token``), sent as
        ``Authorization: Bearer`` with every call of this client; only admin methods need
        it, so give it only to a client that makes admin calls."""
        self.url = url
        self.timeout_s = timeout_s
        headers = {"authorization": f"Bearer {token}"} if token is not None else None
        # trust_env=False: a wallet talks to its own node, normally on 127.0.0.1; an
        # HTTP(S)_PROXY meant for the web must not reroute (or log) signed transactions,
        # and no credentials from ~/.netrc should be sent to the node.
        self._http = httpx.Client(timeout=timeout_s, transport=transport, trust_env=False,
                                  headers=headers)
        self._ids = itertools.count(1)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RpcClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def call(self, method: str, *params: Any) -> Any:
        """The result of ``method(*params)``; raises an RpcClientError subclass otherwise."""
        req_id = next(self._ids)
        body = {"jsonrpc": "2.0", "method": method, "params": list(params), "id": req_id}
        try:
            resp = self._http.post(self.url, json=body)
        except httpx.TimeoutException:
            raise RpcUnreachable(
                f"the node at {self.url} did not answer within {self.timeout_s:g} s"
            ) from None
        except httpx.InvalidURL as exc:
            raise RpcUnreachable(f"bad RPC URL {self.url!r}: {exc}") from None
        except httpx.RequestError as exc:  # connect/read errors, bad scheme, decoding
            raise RpcUnreachable(f"cannot reach node at {self.url} ({exc})") from None
        return self._result(resp, req_id)

    def _result(self, resp: httpx.Response, req_id: int) -> Any:
        try:
            doc = resp.json()
        except ValueError:
            doc = None
        if not isinstance(doc, dict) or doc.get("jsonrpc") != "2.0":
            snippet = resp.text[:120].strip()
            raise RpcProtocolError(
                f"the server at {self.url} did not answer JSON-RPC "
                f"(HTTP {resp.status_code}{': ' + snippet if snippet else ''}); "
                "is this a MUXER node's /rpc URL?"
            )
        if "error" in doc:
            err = doc["error"]
            if not isinstance(err, dict):
                raise RpcProtocolError(f"the node at {self.url} sent a malformed error")
            code = err.get("code")
            message = err.get("message")
            raise RpcError(
                code if type(code) is int else 0,
                message if isinstance(message, str) else "error",
                err.get("data"),
            )
        if doc.get("id") != req_id or "result" not in doc:
            raise RpcProtocolError(
                f"the node at {self.url} answered another request (id {doc.get('id')!r})"
            )
        return doc["result"]
