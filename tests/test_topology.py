"""Topology files (devnet/topology.py), the proxy's per-link shaping (Shaper, Egress, and a
real proxy on 127.0.0.1 that delays bytes and keeps their order), and ``generate``'s
reproducibility: pure or in-process, fast."""

from __future__ import annotations

import random
import tomllib
from functools import partial
from pathlib import Path

import pytest
import trio

from devnet.generate import dump_toml, generate_scenario
from devnet.manifest import DevnetError
from devnet.proxy import RTO_MIN_MS, Egress, Link, Proxy, Shaper, cut_pairs
from devnet.scenario import KINDS
from devnet.topology import (
    load_topology,
    parse_duration_ms,
    parse_pct,
    parse_topology,
    with_loss,
)

REPO = Path(__file__).resolve().parent.parent
TOPOLOGIES = REPO / "devnet" / "topologies"


def test_global5_places_21_nodes_round_robin_with_symmetric_links() -> None:
    t = load_topology(TOPOLOGIES / "global-5.toml", 21)
    assert [r.name for r in t.regions] == ["us-east", "us-west", "eu", "apac", "sa"]
    assert [len(r.nodes) for r in t.regions] == [5, 4, 4, 4, 4]
    assert t.region_of("n1") == "us-east" and t.region_of("n6") == "us-east"
    assert t.region_of("n3") == "eu"
    # one way = half the cited round trip (Frankfurt - Tokyo 236.5 ms RTT)
    assert t.shape("n3", "n4").delay_ms == t.shape("n4", "n3").delay_ms == 118.3
    assert t.shape("n1", "n6").delay_ms == 0.5  # same region
    assert len(t.pair_shapes()) == 21 * 20
    assert t.bandwidth("n7") == 100
    assert "acomputerscientistlearnsaws" in t.source
    lossy = with_loss(t, 1.0)
    assert lossy.shape("n1", "n2").loss_pct == 1.0 and lossy.shape("n1", "n6").loss_pct == 1.0
    lan = load_topology(TOPOLOGIES / "lan.toml", 4)
    assert lan.regions[0].nodes == ["n1", "n2", "n3", "n4"]


def _doc(**extra: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "region": [{"name": "a", "nodes": ["n3"], "count": 2}, {"name": "b", "count": 1},
                   {"name": "c", "delay_ms": 2}],
        "link": [{"from": "a", "to": "b", "delay_ms": 10},
                 {"from": "b", "to": "a", "delay_ms": 30, "loss_pct": 5},
                 {"from": "a", "to": "c", "delay_ms": 20, "jitter_ms": 3},
                 {"from": "b", "to": "c", "delay_ms": 40}],
    }
    doc.update(extra)
    return doc


def test_counts_named_nodes_and_one_way_links() -> None:
    t = parse_topology(_doc(), 5)
    assert t.region("a").nodes == ["n1", "n3"]  # n3 named, n1 dealt (count 2)
    assert t.region("b").nodes == ["n2"]  # count 1
    assert t.region("c").nodes == ["n4", "n5"]  # no count: takes the rest
    assert t.shape("n1", "n2").delay_ms == 10
    assert t.shape("n2", "n1").delay_ms == 30 and t.shape("n2", "n1").loss_pct == 5
    assert t.shape("n4", "n5").delay_ms == 2
    assert t.shape("n3", "n4").jitter_ms == 3 == t.shape("n4", "n3").jitter_ms


@pytest.mark.parametrize(("doc", "nodes", "message"), [
    ({"region": []}, 2, "at least one"),
    ({"region": [{"name": "a"}, {"name": "b"}]}, 2, "no \\[\\[link\\]\\] between a-b"),
    ({"region": [{"name": "a", "count": 1}]}, 2, "room for 1"),
    ({"region": [{"name": "a", "nodes": ["n1"]}, {"name": "b", "nodes": ["n1"]}],
      "link": [{"from": "a", "to": "b"}]}, 2, "also in region"),
    ({"region": [{"name": "a", "delay_ms": -1}]}, 1, "delay_ms must be a number"),
    ({"region": [{"name": "a", "colour": 1}]}, 1, "unknown key"),
    ({"region": [{"name": "a"}], "link": [{"from": "a", "to": "z"}]}, 1, "not a region"),
    ({"region": [{"name": "a"}, {"name": "b"}],
      "link": [{"from": "a", "to": "b"}, {"from": "a", "to": "b"}]}, 1, "given twice"),
])
def test_bad_topologies_say_what_is_wrong(doc: dict[str, object], nodes: int,
                                          message: str) -> None:
    with pytest.raises(DevnetError, match=message):
        parse_topology(doc, nodes)


def test_durations_and_percentages() -> None:
    assert parse_duration_ms("300ms") == 300.0
    assert parse_duration_ms("0.3s") == 300.0
    assert parse_duration_ms("12") == 12.0
    assert parse_pct("5%") == 5.0
    with pytest.raises(DevnetError, match="between 0 and 100"):
        parse_pct("150%")
    with pytest.raises(DevnetError, match="not a duration"):
        parse_duration_ms("soon")


def test_isolated_nodes_cut_every_pair() -> None:
    assert cut_pairs(None, ["n2"], ["n1", "n2", "n3"]) == {frozenset(("n1", "n2")),
                                                          frozenset(("n2", "n3"))}


# --- shaping ------------------------------------------------------------------------------


def test_shaper_is_seeded_bounded_and_charges_a_retransmission_for_loss() -> None:
    a = Shaper("n1>n2", 7, {"delay_ms": 50, "jitter_ms": 10, "loss_pct": 20})
    b = Shaper("n1>n2", 7, {"delay_ms": 50, "jitter_ms": 10, "loss_pct": 20})
    other = Shaper("n1>n2", 8, {"delay_ms": 50, "jitter_ms": 10, "loss_pct": 20})
    xs = [a.extra_s(1000) for _ in range(500)]
    assert xs == [b.extra_s(1000) for _ in range(500)]  # same seed, same draws
    assert xs != [other.extra_s(1000) for _ in range(500)]
    penalty = (RTO_MIN_MS + 2 * 50) / 1000
    plain = [x for x in xs if x < 0.1]
    lost = [x for x in xs if x >= 0.1]
    assert all(0.040 <= x <= 0.060 for x in plain)  # delay +- jitter
    assert all(0.040 + penalty <= x <= 0.060 + penalty for x in lost)
    assert 0.1 < len(lost) / len(xs) < 0.3 and a.losses == len(lost)
    # a bigger chunk spans more segments: more likely to lose one of them
    big = Shaper("n1>n2", 7, {"loss_pct": 1})
    assert sum(big.extra_s(64_000) > 0 for _ in range(400)) > 100


def test_egress_serialises_at_the_bandwidth() -> None:
    e = Egress(8.0)  # 1 MB/s
    assert e.done_at(0.0, 500_000) == pytest.approx(0.5)
    assert e.done_at(0.1, 500_000) == pytest.approx(1.0)  # queued behind the first
    assert e.done_at(5.0, 1000) == pytest.approx(5.001)
    assert Egress(0).done_at(3.0, 10**9) == 3.0  # unlimited


async def test_proxy_delays_each_direction_and_keeps_byte_order() -> None:
    """A real proxy on 127.0.0.1: n1 dials n2 through it; bytes n1 -> n2 take ~80 ms (with
    40 ms of jitter, which must not reorder them), bytes n2 -> n1 ~20 ms."""
    received = bytearray()
    got_all = trio.Event()
    total = 200 * 100

    async def server(stream: trio.SocketStream) -> None:
        async with stream:
            await stream.send_all(b"pong")
            while len(received) < total:
                data = await stream.receive_some(65536)
                if not data:
                    break
                received.extend(data)
            got_all.set()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, server, 0, host="127.0.0.1"))
        target = listeners[0].socket.getsockname()[1]
        probe = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
        listen = probe.socket.getsockname()[1]
        await probe.aclose()
        px = Proxy("127.0.0.1", [Link("n1", "n2", listen, "127.0.0.1", target)],
                   shapes={"n1>n2": {"delay_ms": 80, "jitter_ms": 40},
                           "n2>n1": {"delay_ms": 20}}, seed=1)
        inner = await trio.open_tcp_listeners(listen, host="127.0.0.1")
        nursery.start_soon(trio.serve_listeners, lambda s: px.handle(px.links[0], s), inner)
        client = await trio.open_tcp_stream("127.0.0.1", listen)
        t0 = trio.current_time()
        assert await client.receive_some(4) == b"pong"
        back = trio.current_time() - t0
        # raw bytes (not frames): the rewriter gives up parsing and forwards them as they are
        chunks = [bytes([i % 256]) * 100 for i in range(200)]
        t1 = trio.current_time()
        for c in chunks:
            await client.send_all(c)
            await trio.sleep(0.001)
        with trio.fail_after(10):
            await got_all.wait()
        forth = trio.current_time() - t1
        await client.aclose()
        nursery.cancel_scope.cancel()
    assert bytes(received) == b"".join(chunks)  # order kept despite the jitter
    assert 0.018 <= back < 0.5
    assert forth >= 0.040  # at least delay - jitter on the last chunk
    assert px.shapers["n1>n2"].chunks > 0


# --- generate -------------------------------------------------------------------------------


def test_generate_is_reproducible_and_valid(tmp_path: Path) -> None:
    a = generate_scenario(11, max_nodes=7, duration=60)
    assert a == generate_scenario(11, max_nodes=7, duration=60)
    assert a != generate_scenario(12, max_nodes=7, duration=60)
    assert a != generate_scenario(11, max_nodes=7, duration=90)
    for seed in range(30):
        doc = tomllib.loads(generate_scenario(seed, max_nodes=21, duration=120))
        cfg = doc["devnet"]
        assert 3 <= cfg["nodes"] <= 21 and 1 <= cfg["witnesses"] <= cfg["nodes"]
        assert cfg["seed"] == seed
        topo = parse_topology(cfg["topology"], cfg["nodes"])  # a valid topology
        assert sum(len(r.nodes) for r in topo.regions) == cfg["nodes"]
        assert all(s["kind"] in KINDS for s in doc["step"])
        checks = [s.get("check") for s in doc["step"] if s["kind"] == "assert"]
        assert "no_conflicting_final" in checks and "final_txs_kept" in checks
        assert checks.count("finality_resumes") >= 1
        assert doc["invariants"] == ["no_conflicting_final", "finality_resumes",
                                     "final_txs_kept"]


def test_dump_toml_round_trips() -> None:
    rng = random.Random(3)
    doc = {"a": 1, "b": "x\"y", "c": [1, 2], "t": {"f": 0.5, "g": True,
                                                   "arr": [{"k": rng.random()}]},
           "step": [{"kind": "wait", "seconds": 1.5}, {"kind": "heal"}]}
    assert tomllib.loads(dump_toml(doc)) == doc
