"""rpc.discover (section 12): an OpenRPC 1.2 document generated from the method tables
that dispatch (``rpc.METHODS`` and ``rpc.WS_METHODS``), checked against them: the same
names, and for each method the params it documents are the ones it accepts (one param
too many is refused; dropping an optional one is not a count error)."""

from __future__ import annotations

from typing import Any

import pytest

from muxernode.rpc import METHODS, WS_METHODS, JsonRpcApp, doc_of, openrpc_document
from tests.rpc_helpers import LedgerBackend, call, result, served

ALL = sorted({*METHODS, *WS_METHODS})


def test_document_lists_every_method_of_the_live_tables() -> None:
    doc = openrpc_document()
    assert doc["openrpc"].startswith("1.2.")
    assert {"title", "version"} <= set(doc["info"])
    names = [m["name"] for m in doc["methods"]]
    assert names == ALL  # every method, itself included, nothing else
    assert "rpc.discover" in names and "subscribe" in names
    for m in doc["methods"]:
        assert m["summary"] and m["paramStructure"] == "by-position"
        assert {"name", "schema"} <= set(m["result"])
        required = [p["required"] for p in m["params"]]
        assert required == sorted(required, reverse=True), m["name"]  # optional ones last
        for p in m["params"]:
            assert p["name"] and isinstance(p["schema"], dict)
        tags = {t["name"] for t in m.get("tags", [])}
        assert ("websocket-only" in tags) == (m["name"] in WS_METHODS)


def test_a_method_without_a_description_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    async def _undocumented(b: Any, p: list[Any]) -> Any:
        return None

    monkeypatch.setitem(METHODS, "undocumented", _undocumented)
    assert doc_of(_undocumented) is None
    with pytest.raises(RuntimeError, match="undocumented"):
        openrpc_document()


async def test_documented_params_are_what_dispatch_accepts() -> None:
    app = JsonRpcApp(LedgerBackend(), admin_token="t" * 64)
    async with served(app) as client:
        client.headers["authorization"] = "Bearer " + "t" * 64
        live = await result(client, "rpc.discover")
        assert live == openrpc_document()
        for m in live["methods"]:
            if m["name"] in WS_METHODS:
                continue
            # one param more than documented is always refused as invalid params
            too_many = [None] * (len(m["params"]) + 1)
            err = (await call(client, m["name"], *too_many))["error"]
            assert err["code"] == -32602, (m["name"], err)
            if m["params"] and not m["params"][0]["required"]:
                continue
            # fewer than the required ones: refused too
            n_required = sum(p["required"] for p in m["params"])
            if n_required:
                err = (await call(client, m["name"], *[None] * (n_required - 1)))["error"]
                assert err["code"] == -32602, (m["name"], err)
