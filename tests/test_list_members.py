"""list_members (muxernode's choice, docs/rpc.md): the view over a real ledger
(tests.ledger_helpers.Chain through tests.rpc_helpers.LedgerBackend) and the RPC method's
paging and parameter checks."""

from __future__ import annotations

from typing import Any

import trio

from consensus.crypto import address_to_text
from muxernode import views
from muxernode.rpc import INVALID_PARAMS, NOT_FOUND, JsonRpcApp
from tests.ledger_helpers import ALICE, BOB, CAROL, DAVE, ERIN, SOC, op_join, op_set_proxy
from tests.rpc_helpers import TIMEOUT, LedgerBackend, error, result, served, society_backend

FIELDS = {"address", "identity", "joined_at", "karma", "escrow", "charity_escrow", "proxy",
          "delegators"}


def five_members() -> LedgerBackend:
    """society_backend's SOC (ALICE, BOB, CAROL) with DAVE and ERIN joined, CAROL's proxy
    BOB; then 150 s pass, so karma has decayed since it was stamped."""
    b, _ = society_backend()
    c = b.c
    b.apply_block([c.tx(DAVE, op_join(SOC, "dave")), c.tx(ERIN, op_join(SOC, "erin")),
                   c.tx(CAROL, op_set_proxy(BOB.address))])
    b.apply_block([], at=c.time + 150)
    return b


def test_view_pages_in_address_order_with_decayed_karma() -> None:
    b = five_members()
    c = b.c
    everyone = sorted(k.address for k in (ALICE, BOB, CAROL, DAVE, ERIN))
    whole = views.list_members(c.ledger, SOC, c.time, None, 100)
    assert whole is not None and whole["next"] is None
    assert [m["address"] for m in whole["items"]] == [address_to_text(a) for a in everyone]
    for item, address in zip(whole["items"], everyone, strict=True):
        full = views.member_view(c.ledger, SOC, address, c.time)
        assert full is not None and set(item) == FIELDS
        assert item == {k: full[k] for k in FIELDS}
    by_name = {m["identity"]: m for m in whole["items"]}
    assert by_name["carol"]["proxy"] == BOB.address_text and by_name["bob"]["delegators"] == 1
    # karma is decayed to the head (10 % per 100 s): below what the pledges stamped
    assert 0 < by_name["bob"]["karma"] < 10_000 and by_name["bob"]["escrow"] == 20_000

    seen: list[dict[str, Any]] = []
    after: bytes | None = None
    pages = 0
    while True:
        page = views.list_members(c.ledger, SOC, c.time, after, 2)
        assert page is not None and len(page["items"]) <= 2
        seen += page["items"]
        pages += 1
        if page["next"] is None:
            break
        assert page["next"] == everyone[len(seen) - 1].hex()
        after = bytes.fromhex(page["next"])
    assert pages == 3 and seen == whole["items"]
    # exactly one page's worth: no next
    assert views.list_members(c.ledger, SOC, c.time, everyone[2], 2) == {
        "items": whole["items"][3:], "next": None}
    assert views.list_members(c.ledger, "nosuch", c.time, None, 20) is None


async def test_rpc_paging_and_params() -> None:
    b = five_members()
    with trio.fail_after(TIMEOUT):
        async with served(JsonRpcApp(b)) as client:
            first = await result(client, "list_members", SOC)
            assert len(first["items"]) == 5 and first["next"] is None
            assert first == views.list_members(b.c.ledger, SOC, b.c.time, None, 20)
            page = await result(client, "list_members", SOC, {"limit": 3})
            assert page["items"] == first["items"][:3] and page["next"] is not None
            rest = await result(client, "list_members", SOC, {"after": page["next"]})
            assert rest == {"items": first["items"][3:], "next": None}
            # a cursor is accepted in either case
            assert await result(client, "list_members", SOC,
                                {"after": page["next"].upper()}) == rest

            assert await error(client, "list_members", "nosuch") == {
                "code": NOT_FOUND, "message": "not found",
                "data": {"what": "society", "id": "nosuch"}}
            for params in ([], ["Bad"], [SOC, {"limit": 0}], [SOC, {"limit": 101}],
                           [SOC, {"limit": True}], [SOC, {"after": "00" * 19}],
                           [SOC, {"after": "zz" * 20}], [SOC, {"after": 5}],
                           [SOC, {"before": "00" * 20}], [SOC, []], [SOC, {}, {}]):
                err = await error(client, "list_members", *params)
                assert err["code"] == INVALID_PARAMS, (params, err)
