"""The member web app in Debian's Chromium against a real daemon (1-s blocks).

Two members, Anna (a1) and Boris (a2), each in their own browser context, play the whole
story in the page: keys, a society, join, pledge, standing pledge, a proxy chosen by name
from the society's members, a claim, votes directly and by proxy (a third member, a3,
joins through the RPC and makes Boris its proxy; the members list shows all three, paged
for a visitor), give, the discussion, a charity request funded from charity escrow,
withdraw; each sees the other's actions arrive live over the WebSocket. Then: the Russian
interface and a rejected tx's message (the node's reason in words, what was typed kept),
and the main flow by keyboard only. Screenshots of each page go to the test's tmp dir; the
main ones are copied to docs/img/web-*.png.
"""

# ruff: noqa: RUF001 - the Russian interface is checked by its Russian words
from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from consensus.crypto import PrivateKey, address_of, address_to_text
from consensus.tx import build_tx, tapos_of
from tests.procs import wait_for
from tests.web_helpers import Node, browser, node, shot

__all__ = ["browser", "node"]

PASS = "correct horse battery"
T = 20_000  # ms: a tx is included within a few 1-s blocks; the load of CI leaves slack
MUX = 100_000
CIRCLE = [86400, 3844, 1000, 0, 0, 7 * 86400, 10, MUX, MUX, "MUX", 1000, 10]


def addr(key: PrivateKey) -> str:
    return address_to_text(address_of(key.public_key))


def send(n: Node, who: str, op: list[Any]) -> str:
    """A tx through the RPC, signed in Python; waits until it is included."""
    info = n.daemon.rpc("chain_info")
    num, prefix = tapos_of(info["head_height"], bytes.fromhex(info["head_id"]))
    tx = build_tx(n.keys[who], n.chain_id, op, ref_block_num=num, ref_block_prefix=prefix,
                  expiration=info["head_time"] + 600, fee=info["base_fee"])
    n.daemon.rpc("submit_tx", tx.raw.hex())
    wait_for(lambda: n.daemon.rpc("get_tx", tx.tx_id.hex())["status"] in ("included", "final"),
             timeout=T / 1000)
    return tx.tx_id.hex()


@pytest.fixture
def contexts(browser: Any) -> Iterator[list[Any]]:
    made: list[Any] = []

    def new(width: int = 1100, height: int = 900) -> Any:
        ctx = browser.new_context(viewport={"width": width, "height": height})
        ctx.set_default_timeout(T)
        made.append(ctx)
        return ctx

    yield [new, made]
    for ctx in made:
        ctx.close()


def open_page(ctx: Any, n: Node) -> Any:
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.errors = errors
    page.goto(n.web_url)
    page.get_by_test_id("head").filter(has_text="block").wait_for()
    return page


def import_key(page: Any, name: str, secret: str) -> None:
    page.get_by_role("link", name="Keys").click()
    form = page.locator("form").filter(has=page.get_by_role("heading", name="Import secret"))
    form.get_by_label("Key name").fill(name)
    form.get_by_label("Secret").fill(secret)
    form.get_by_label("Passphrase").fill(PASS)
    form.get_by_role("button", name="Import").click()
    form.get_by_text("Key imported and unlocked.").wait_for()


def form_with(page: Any, heading: str) -> Any:
    return page.locator("form").filter(has=page.get_by_role("heading", name=heading, exact=True))


def test_two_members_play_the_story(contexts: list[Any], node: Node, tmp_path: Path) -> None:
    new = contexts[0]
    anna, boris = open_page(new(), node), open_page(new(), node)
    a1, a2 = node.keys["a1"], node.keys["a2"]
    shot(anna, tmp_path, "societies-empty")

    import_key(anna, "anna", node.secrets["a1"])
    import_key(boris, "boris", node.secrets["a2"])
    shot(anna, tmp_path, "keys", docs=True)

    # Anna creates a society with the "circle of friends" preset (the default choice)
    anna.get_by_role("link", name="Societies").click()
    anna.get_by_role("link", name="Create society").click()
    anna.get_by_label("Society id").fill("flood-aid")
    anna.get_by_label("Name", exact=True).fill("Flood aid")
    anna.get_by_label("Purpose").fill("Neighbours helping each other after floods.")
    anna.get_by_text("Gifts may start as soon as a claim is approved").wait_for()
    shot(anna, tmp_path, "new-society", docs=True)
    anna.get_by_role("button", name="Create society").click()
    anna.get_by_role("heading", name="Flood aid").wait_for()

    # Boris's directory shows it as blocks arrive; he opens it
    boris.get_by_role("link", name="Societies").click()
    boris.get_by_role("link", name="Flood aid").click()
    boris.get_by_text("A member can file a claim at once.").wait_for()

    # both join; Boris publishes only a salted hash of his name
    anna.get_by_label("Identity").fill("Anna")
    anna.get_by_role("button", name="Join").click()
    anna.get_by_test_id("membership").wait_for()
    boris.get_by_label("Identity").fill("Boris")
    boris.get_by_label("Publish only a salted hash").check()
    boris.get_by_role("button", name="Join").click()
    boris.get_by_test_id("membership").get_by_text("sha256:").wait_for()
    boris.get_by_test_id("membership").get_by_text("the hash of Boris with the salt").wait_for()
    # Anna sees the second member arrive live
    anna.get_by_test_id("members").filter(has_text="2").wait_for()

    # pledges
    form_with(anna, "Pledge").get_by_label("Amount").fill("50")
    form_with(anna, "Pledge").get_by_role("button", name="Pledge").click()
    anna.get_by_test_id("escrow").filter(has_text="45").wait_for()  # 10 % to charity
    form_with(boris, "Pledge").get_by_label("Amount").fill("100")
    form_with(boris, "Pledge").get_by_role("button", name="Pledge").click()
    boris.get_by_test_id("karma").filter(has_text=re.compile(r"^50$")).wait_for()  # whole MUX

    # Boris sets a standing pledge of 1 MUX a day
    standing = form_with(boris, "Standing pledge")
    standing.get_by_label("Amount").fill("1")
    standing.get_by_label("Every (days)").fill("1")
    standing.get_by_role("button", name="Set standing pledge").click()
    boris.get_by_test_id("standing-status").filter(has_text="1 MUX every 1 day").wait_for()
    sp = node.daemon.rpc("get_standing_pledge", "flood-aid", addr(a2))
    assert sp is not None and sp["amount"] == MUX and sp["interval_s"] == 86400

    # Boris makes Anna his proxy, chosen by name among the society's members with the
    # karma she carries (he himself is not offered), then clears it
    proxy = form_with(boris, "Proxy")
    anna_row = proxy.get_by_role("row").filter(has_text="Anna")
    anna_row.get_by_role("cell", name="25", exact=True).wait_for()  # karma in whole MUX
    assert proxy.get_by_role("row").count() == 2  # the header and Anna
    anna_row.get_by_role("button", name="Choose Anna").click()
    proxy.get_by_test_id("proxy-chosen").filter(has_text="Anna (karma 25,").wait_for()
    assert proxy.get_by_label("Proxy's address").input_value() == addr(a1)
    proxy.get_by_role("button", name="Set proxy").click()
    proxy.get_by_text("Your proxy: Anna").wait_for()
    proxy.get_by_role("button", name="Clear proxy").click()
    proxy.get_by_text("Your proxy:").wait_for(state="detached")

    # a third member joins through the RPC and makes Boris its proxy
    send(node, "a3", [3, "flood-aid", "Vera"])
    send(node, "a3", [4, "flood-aid", 10 * MUX])
    send(node, "a3", [14, "flood-aid", address_of(a2.public_key)])
    # the society page lists the members: name (or that it is hashed), karma, escrow
    members = anna.get_by_test_id("member-list")
    members.get_by_role("row").filter(has_text="Vera").filter(has_text="has a proxy").wait_for()
    members.get_by_role("row").filter(has_text="name published as a hash").filter(
        has_text="delegators: 1").get_by_role("cell", name="50", exact=True).wait_for()
    members.get_by_role("row").filter(has_text="Anna").filter(has_text="45 MUX").wait_for()
    assert members.get_by_role("row").count() == 4  # the header and three members
    # paged: a visitor's page with the node's pages cut to one member (by the test) shows
    # one and "More" adds the next
    visitor = open_page(new(), node)

    def one_a_page(route: Any) -> None:
        body = route.request.post_data_json
        if isinstance(body, dict) and body.get("method") == "list_members":
            body["params"][1]["limit"] = 1
            route.continue_(post_data=json.dumps(body))
        else:
            route.continue_()
    visitor.route("**/rpc", one_a_page)
    visitor.goto(node.web_url + "#/society/flood-aid")
    listed = visitor.get_by_test_id("member-list")
    listed.get_by_text("1 of 3 members shown.").wait_for()
    listed.get_by_role("button", name="More").click()
    listed.get_by_text("2 of 3 members shown.").wait_for()
    listed.get_by_role("button", name="More").click()
    listed.get_by_text("3 of 3 members shown.").wait_for()
    assert listed.get_by_role("button", name="More").count() == 0
    assert visitor.errors == []

    # Anna files a claim; the form shows the limit her karma buys before she commits it
    anna.locator("summary", has_text="File a claim").click()
    claim = anna.locator("details").filter(has_text="File a claim").locator("form")
    claim.get_by_label("Subject").fill("Roof torn off")
    claim.get_by_label("Amount").fill("20")
    claim.get_by_label("Karma to commit").fill("2")  # in whole units of the asset, as shown
    claim.get_by_test_id("limit").filter(has_text="limit is 20 MUX").wait_for()
    claim.get_by_label("The story").fill("The storm of Tuesday took the roof of our house.")
    claim.get_by_label("Evidence hash").fill("photos of the roof, insurer's letter")
    claim.get_by_role("button", name="File a claim").click()
    anna.get_by_role("link", name="Roof torn off").wait_for()
    shot(anna, tmp_path, "society", docs=True)

    # before any vote Anna amends her story; Boris sees the new story live
    anna.get_by_role("link", name="Roof torn off").click()
    boris.get_by_role("link", name="Roof torn off").click()
    amend = form_with(anna, "Amend claim")
    amend.get_by_label("The story").fill("The storm of Tuesday took the roof; rain got in.")
    amend.get_by_role("button", name="Amend claim").click()
    boris.get_by_text("rain got in").wait_for()
    # Boris approves, withdraws his vote, approves again; a3's karma counts through him
    boris.get_by_role("button", name="Approve").click()
    boris.get_by_role("button", name="Withdraw vote").click()
    boris.get_by_text("You have not voted.").wait_for()
    boris.get_by_role("button", name="Approve").click()
    votes = anna.get_by_test_id("votes")
    votes.get_by_text("by proxy").wait_for()
    assert votes.get_by_role("row").count() == 3  # header, Boris, a3 via Boris
    anna.get_by_text("it can no longer be amended").wait_for()
    # Boris gives from his escrow; Anna sees it received
    form_with(boris, "Give").get_by_label("Amount").fill("5")
    form_with(boris, "Give").get_by_role("button", name="Give").click()
    anna.get_by_text("approved", exact=True).wait_for()
    anna.locator("dd").filter(has_text="5 MUX").first.wait_for()
    # every submitted tx shows its status: Boris's give goes final
    boris.locator(".txlog [data-status=final]").filter(has_text="Give").wait_for()

    # the discussion: Boris asks, Anna answers, each sees the other's comment live
    boris.get_by_label("Comment").fill("Is the insurer paying part of it?")
    boris.get_by_role("button", name="Send comment").click()
    anna.get_by_test_id("comments").get_by_text("Is the insurer paying").wait_for()
    anna.get_by_label("Comment").fill("No: the policy excludes storms. Thank you, Boris!")
    anna.get_by_role("button", name="Send comment").click()
    boris.get_by_test_id("comments").get_by_text("the policy excludes storms").wait_for()
    shot(anna, tmp_path, "claim", docs=True)

    # Boris files a charity request; Anna approves it and funds it from charity escrow
    boris.get_by_role("link", name="Flood aid").click()
    boris.locator("summary", has_text="Charity request").click()
    charity = boris.locator("details").filter(has_text="Charity request").locator("form")
    charity.get_by_label("Subject").fill("Blankets for the shelter")
    charity.get_by_label("Amount").fill("3")
    charity.get_by_label("The story").fill("The school gym shelters twelve families.")
    charity.get_by_role("button", name="Charity request").click()
    anna.get_by_role("link", name="Flood aid").click()
    anna.get_by_role("link", name="Blankets for the shelter").click()
    anna.get_by_role("button", name="Approve").click()
    anna.get_by_text("approved", exact=True).wait_for()
    give = form_with(anna, "Give")
    give.get_by_text("From your charity escrow (5 MUX)").wait_for()
    give.get_by_label("Amount").fill("1")
    give.get_by_role("button", name="Give").click()
    anna.locator("dd").filter(has_text="1 MUX").first.wait_for()

    # Anna withdraws her claim; Boris's society page shows it closed, live
    anna.once("dialog", lambda d: d.accept())
    anna.get_by_role("link", name="Flood aid").click()
    anna.get_by_role("link", name="Roof torn off").click()
    anna.get_by_role("button", name="Withdraw claim").click()
    anna.get_by_text("withdrawn").first.wait_for()
    boris.get_by_text("Closed (1)").wait_for()

    # Boris stops his standing pledge
    boris.get_by_role("button", name="Stop standing pledge").click()
    boris.get_by_test_id("standing-status").wait_for(state="detached")
    assert node.daemon.rpc("get_standing_pledge", "flood-aid", addr(a2)) is None

    # the account page: balances, escrow per society, history with a filter
    boris.get_by_role("link", name="Account").click()
    boris.get_by_test_id("balances").get_by_text("MUX", exact=True).wait_for()
    boris.get_by_role("cell", name="Give").first.wait_for()
    transfer = form_with(boris, "Transfer")
    transfer.get_by_label("To (address)").fill(addr(a1))
    transfer.get_by_label("Amount").fill("2.5")
    transfer.get_by_label("Memo").fill("for the tarpaulin")
    transfer.get_by_role("button", name="Transfer").click()
    boris.get_by_role("cell", name="Transfer · 2.5 MUX").wait_for()
    boris.get_by_label("Type").select_option("pledge")
    boris.get_by_role("cell", name="Give").first.wait_for(state="detached")
    shot(boris, tmp_path, "account", docs=True)

    # the chain agrees with what the pages showed
    claims = node.daemon.rpc("list_claims", "flood-aid")
    by_subject = {c["subject"]: c for c in claims}
    roof, blankets = by_subject["Roof torn off"], by_subject["Blankets for the shelter"]
    assert roof["outcome"] == "withdrawn" and roof["received"] == 5 * MUX
    assert roof["claimant"] == addr(a1) and roof["proxied"] > 0
    assert blankets["kind"] == "charity" and blankets["received"] == MUX
    assert [c["text"] for c in node.daemon.rpc("list_comments", roof["claim_id"])["items"]] == [
        "Is the insurer paying part of it?", "No: the policy excludes storms. Thank you, Boris!"]
    sent = node.daemon.rpc("get_history", addr(a1), {"types": ["transfer"]})["items"]
    assert [(x["role"], x["op"]["amount"], x["op"]["memo"]) for x in sent] == [
        ("recipient", 250_000, "for the tarpaulin")]
    assert anna.errors == [] and boris.errors == []


def test_russian_and_a_rejected_tx(contexts: list[Any], node: Node, tmp_path: Path) -> None:
    send(node, "a4", [2, "taken", "Taken", "", CIRCLE])
    page = open_page(contexts[0](), node)
    import_key(page, "ivan", node.secrets["a4"])
    page.get_by_role("link", name="Societies").click()
    page.get_by_role("link", name="Create society").click()
    # a check the page makes before signing, explained
    page.get_by_label("Society id").fill("AB")
    page.get_by_label("Name", exact=True).fill("Taken again")
    page.get_by_role("button", name="Create society").click()
    page.get_by_role("alert").get_by_text("A society id is 3-32 characters").wait_for()
    # a check only the node can make: the id is taken; its reason in words
    page.get_by_label("Society id").fill("taken")
    page.get_by_role("button", name="Create society").click()
    page.get_by_role("alert").get_by_text(
        "The node refused it: a society with this id already exists").wait_for()
    assert page.get_by_label("Name", exact=True).input_value() == "Taken again"  # kept
    shot(page, tmp_path, "rejected", docs=True)

    page.get_by_label("Language").select_option("ru")
    page.get_by_role("heading", name="Создать общество").wait_for()
    page.get_by_role("button", name="Создать общество").click()
    page.get_by_role("alert").get_by_text(
        "Узел отклонил транзакцию: общество с таким идентификатором уже есть").wait_for()
    assert page.get_by_label("Название").input_value() == "Taken again"
    page.get_by_role("link", name="Общества").click()
    page.get_by_role("link", name="Taken").click()
    page.get_by_role("heading", name="Правила").wait_for()
    page.get_by_text("Участник может подать заявку сразу.").wait_for()
    page.get_by_text("залог 1\u00a0MUX").first.wait_for()
    shot(page, tmp_path, "society-ru", docs=True)
    # amounts the Russian way: digits grouped by a space, a decimal comma
    page.get_by_role("link", name="Счёт").click()
    page.get_by_role("heading", name="Балансы").wait_for()
    balances = page.get_by_test_id("balances").inner_text()
    assert re.search(r"\d{3}\s\d{3},\d+\sMUX", balances), balances
    # the choice is remembered across a reload
    page.reload()
    page.get_by_role("navigation").get_by_role("link", name="Ключи").wait_for()
    # every key of the English table is in the Russian one and the reverse
    missing = page.evaluate("""async () => {
      const {TABLES} = await import('/static/js/i18n.js');
      const en = Object.keys(TABLES.en), ru = Object.keys(TABLES.ru);
      return [en.filter((k) => !(k in TABLES.ru)), ru.filter((k) => !(k in TABLES.en))];
    }""")
    assert missing == [[], []]
    assert page.errors == []


def _tab_to(page: Any, name: str, limit: int = 60) -> None:
    """Tab forward until the focused element's accessible text starts with name."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        text = page.evaluate("""() => { const e = document.activeElement;
          const l = e.labels && e.labels[0];
          return [l ? l.textContent : '', e.textContent || '',
                  e.getAttribute('aria-label') || ''].join('|'); }""")
        if any(part.strip().startswith(name) for part in text.split("|")):
            return
    raise AssertionError(f"{name!r} not reached by {limit} tabs")


def test_keyboard_only_main_flow(contexts: list[Any], node: Node, tmp_path: Path) -> None:
    send(node, "a4", [2, "keys-only", "Keyboard aid", "", CIRCLE])
    page = open_page(contexts[0](390, 844), node)  # a phone-sized screen
    kb = page.keyboard
    _tab_to(page, "Keys")
    kb.press("Enter")
    page.get_by_role("heading", name="Import secret").wait_for()
    # Import secret: the second form's name field
    _tab_to(page, "Secret")
    kb.press("Shift+Tab")
    kb.type("kb")
    kb.press("Tab")
    kb.type(node.secrets["a4"])
    kb.press("Tab")
    kb.type(PASS)
    kb.press("Enter")
    page.get_by_text("Key imported and unlocked.").wait_for()
    page.evaluate("window.scrollTo(0, 0)")
    _tab_to(page, "Societies")
    kb.press("Enter")
    _tab_to(page, "Keyboard aid")
    kb.press("Enter")
    page.get_by_role("heading", name="Keyboard aid").wait_for()
    _tab_to(page, "Identity")
    kb.type("Kim")
    kb.press("Enter")
    page.get_by_test_id("membership").wait_for()
    _tab_to(page, "Amount")
    kb.type("2")
    kb.press("Enter")
    page.get_by_test_id("karma").filter(has_text=re.compile(r"^1$")).wait_for()
    shot(page, tmp_path, "phone", docs=True)
    # nothing wider than the phone's screen: no sideways scrolling
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    member = node.daemon.rpc("get_member", "keys-only", addr(node.keys["a4"]))
    assert member["identity"] == "Kim" and member["pledged_total"] == 2 * MUX
    assert page.errors == []
