"""Topology files (``devnet/topologies/*.toml``): regions, the nodes in each, the one-way
delay, jitter and loss between regions, and each node's bandwidth. docs/research.md has the
format; in short::

    name = "global-5"
    source = "where the latencies come from"

    [[region]]
    name = "us-east"
    nodes = ["n1", "n6"]     # or count = 4, or neither (then nodes are dealt round robin)
    bandwidth_mbit = 100     # per node, each direction (0 or absent: unlimited)
    delay_ms = 0.5           # one-way, between two nodes of this region
    jitter_ms = 0.1
    loss_pct = 0

    [[link]]                 # between two regions; symmetric unless the reverse is given
    from = "us-east"
    to = "eu"
    delay_ms = 44            # one-way
    jitter_ms = 2
    loss_pct = 0.5

Nodes not named in any region's ``nodes`` are dealt round robin, in n1, n2, ... order, to
the regions in file order, skipping a region that is full (its ``count`` reached, or it has
a ``nodes`` list and no ``count``). A pair of regions with no ``[[link]]`` in either
direction is an error: every delay is written down. Top-level ``loss_pct`` (default 0) is
the loss of every link and region that does not give its own.

This module is pure (no I/O except reading the file): the devnet turns a topology into the
per-ordered-pair shapes the link proxy applies (``pair_shapes``) and the per-node
bandwidths that ``devnet.netns`` gives to tc.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devnet.manifest import DevnetError, read_toml

__all__ = [
    "LinkShape",
    "Region",
    "Topology",
    "load_topology",
    "parse_duration_ms",
    "parse_pct",
    "parse_topology",
]


@dataclass(frozen=True)
class LinkShape:
    """What one direction of a link does to the bytes on it (all one-way)."""

    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss_pct: float = 0.0

    def to_json(self) -> dict[str, float]:
        return {"delay_ms": self.delay_ms, "jitter_ms": self.jitter_ms,
                "loss_pct": self.loss_pct}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> LinkShape:
        return cls(float(d.get("delay_ms", 0.0)), float(d.get("jitter_ms", 0.0)),
                   float(d.get("loss_pct", 0.0)))


@dataclass
class Region:
    name: str
    nodes: list[str] = field(default_factory=list)
    count: int | None = None
    fixed: bool = False  # a nodes list without a count: exactly those nodes
    bandwidth_mbit: float = 0.0
    inner: LinkShape = LinkShape()


@dataclass
class Topology:
    name: str
    regions: list[Region]
    links: dict[tuple[str, str], LinkShape]  # ordered region pairs, both directions present
    source: str = ""
    description: str = ""

    def region_of(self, node: str) -> str:
        for r in self.regions:
            if node in r.nodes:
                return r.name
        raise DevnetError(f"node {node} is in no region of topology {self.name}")

    def region(self, name: str) -> Region:
        for r in self.regions:
            if r.name == name:
                return r
        raise DevnetError(f"no region {name!r} in topology {self.name}; regions are "
                          f"{', '.join(r.name for r in self.regions)}")

    def shape(self, a: str, b: str) -> LinkShape:
        """The shape of bytes node ``a`` sends to node ``b``."""
        ra, rb = self.region_of(a), self.region_of(b)
        if ra == rb:
            return self.region(ra).inner
        return self.links[(ra, rb)]

    def pair_shapes(self) -> dict[str, dict[str, float]]:
        """{"a>b": shape} for every ordered pair of placed nodes (the proxy's input)."""
        names = [n for r in self.regions for n in r.nodes]
        return {f"{a}>{b}": self.shape(a, b).to_json() for a in names for b in names if a != b}

    def bandwidth(self, node: str) -> float:
        return self.region(self.region_of(node)).bandwidth_mbit

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source,
                "regions": {r.name: {"nodes": r.nodes, "bandwidth_mbit": r.bandwidth_mbit,
                                     **r.inner.to_json()} for r in self.regions},
                "links": {f"{a}>{b}": s.to_json() for (a, b), s in sorted(self.links.items())}}


def parse_duration_ms(text: str | float | int) -> float:
    """'300ms', '0.3s', '300' (ms) -> 300.0."""
    if isinstance(text, int | float):
        return float(text)
    t = text.strip().lower()
    try:
        if t.endswith("ms"):
            return float(t[:-2])
        if t.endswith("s"):
            return float(t[:-1]) * 1000.0
        return float(t)
    except ValueError:
        raise DevnetError(f"not a duration: {text!r} (like 300ms or 0.3s)") from None


def parse_pct(text: str | float | int) -> float:
    """'5%', '5' -> 5.0 (percent, 0..100)."""
    if isinstance(text, int | float):
        v = float(text)
    else:
        try:
            v = float(text.strip().removesuffix("%"))
        except ValueError:
            raise DevnetError(f"not a percentage: {text!r} (like 5%)") from None
    if not 0.0 <= v <= 100.0:
        raise DevnetError(f"a percentage must be between 0 and 100, got {text!r}")
    return v


def _num(d: dict[str, Any], key: str, where: str, default: float = 0.0) -> float:
    v = d.get(key, default)
    if type(v) not in (int, float) or v < 0:
        raise DevnetError(f"{where}: {key} must be a number >= 0, got {v!r}")
    return float(v)


def _shape(d: dict[str, Any], where: str, loss_default: float) -> LinkShape:
    s = LinkShape(_num(d, "delay_ms", where), _num(d, "jitter_ms", where),
                  _num(d, "loss_pct", where, loss_default))
    if s.loss_pct > 100:
        raise DevnetError(f"{where}: loss_pct must be at most 100")
    return s


_REGION_KEYS = {"name", "nodes", "count", "bandwidth_mbit", "delay_ms", "jitter_ms", "loss_pct"}
_LINK_KEYS = {"from", "to", "delay_ms", "jitter_ms", "loss_pct"}
_TOP_KEYS = {"name", "source", "description", "loss_pct", "region", "link"}


def parse_topology(doc: dict[str, Any], nodes: int, *, name: str = "topology") -> Topology:
    """A parsed TOML document and a node count (n1..nN) -> a Topology with every node
    placed. Errors name the bad key."""
    bad = set(doc) - _TOP_KEYS
    if bad:
        raise DevnetError(f"{name}: unknown key(s) {', '.join(sorted(bad))}")
    loss_default = _num(doc, "loss_pct", name)
    raw_regions = doc.get("region")
    if not isinstance(raw_regions, list) or not raw_regions:
        raise DevnetError(f"{name}: needs at least one [[region]]")
    regions: list[Region] = []
    placed: dict[str, str] = {}
    names = [f"n{i + 1}" for i in range(nodes)]
    for i, rd in enumerate(raw_regions, 1):
        where = f"{name} region {i}"
        if not isinstance(rd, dict) or not isinstance(rd.get("name"), str) or not rd["name"]:
            raise DevnetError(f"{where}: needs name = \"...\"")
        where = f"{name} region {rd['name']!r}"
        bad = set(rd) - _REGION_KEYS
        if bad:
            raise DevnetError(f"{where}: unknown key(s) {', '.join(sorted(bad))}")
        if any(r.name == rd["name"] for r in regions):
            raise DevnetError(f"{where}: a second region with this name")
        listed = rd.get("nodes", [])
        if not isinstance(listed, list) or not all(isinstance(n, str) for n in listed):
            raise DevnetError(f"{where}: nodes must be a list of node names")
        count = rd.get("count")
        if count is not None and (type(count) is not int or count < 0):
            raise DevnetError(f"{where}: count must be an integer >= 0")
        r = Region(name=rd["name"], count=count, fixed="nodes" in rd and count is None,
                   bandwidth_mbit=_num(rd, "bandwidth_mbit", where),
                   inner=_shape(rd, where, loss_default))
        for n in listed:
            if n not in names:
                continue  # a file written for more nodes than this devnet has
            if n in placed:
                raise DevnetError(f"{where}: node {n} is also in region {placed[n]!r}")
            placed[n] = r.name
            r.nodes.append(n)
        regions.append(r)

    def full(r: Region) -> bool:
        if r.count is not None:
            return len(r.nodes) >= r.count
        return r.fixed

    rest = [n for n in names if n not in placed]
    k = 0
    for n in rest:
        for _ in range(len(regions)):
            r = regions[k % len(regions)]
            k += 1
            if not full(r):
                r.nodes.append(n)
                break
        else:
            room = sum(len(r.nodes) for r in regions)
            raise DevnetError(f"{name}: its regions have room for {room} node(s), the devnet "
                              f"has {nodes}; raise a count or add a region without one")
    for r in regions:
        r.nodes.sort(key=lambda n: int(n[1:]))

    links: dict[tuple[str, str], LinkShape] = {}
    given: set[tuple[str, str]] = set()  # the directions written in the file
    region_names = {r.name for r in regions}
    for i, ld in enumerate(doc.get("link", []) or [], 1):
        where = f"{name} link {i}"
        if not isinstance(ld, dict):
            raise DevnetError(f"{where}: must be a table")
        bad = set(ld) - _LINK_KEYS
        if bad:
            raise DevnetError(f"{where}: unknown key(s) {', '.join(sorted(bad))}")
        a, b = ld.get("from"), ld.get("to")
        for end in (a, b):
            if end not in region_names:
                raise DevnetError(f"{where}: {end!r} is not a region "
                                  f"({', '.join(sorted(region_names))})")
        if a == b:
            raise DevnetError(f"{where}: from and to are the same region; within a region "
                              "use the region's delay_ms")
        assert isinstance(a, str) and isinstance(b, str)
        if (a, b) in given:
            raise DevnetError(f"{where}: link {a} -> {b} given twice")
        s = _shape(ld, where, loss_default)
        links[(a, b)] = s
        given.add((a, b))
        if (b, a) not in given:
            links[(b, a)] = s  # symmetric until the reverse direction is given
    missing = [f"{a.name}-{b.name}" for i, a in enumerate(regions) for b in regions[i + 1:]
               if (a.name, b.name) not in links]
    if missing:
        raise DevnetError(f"{name}: no [[link]] between {', '.join(missing)}")
    return Topology(name=str(doc.get("name", name)), regions=regions, links=links,
                    source=str(doc.get("source", "")),
                    description=str(doc.get("description", "")))


def load_topology(path: str | Path, nodes: int, *, loss_pct: float | None = None) -> Topology:
    """Read and parse a topology file for ``nodes`` nodes; ``loss_pct`` (if given)
    replaces every link's and region's loss."""
    p = Path(path)
    topo = parse_topology(read_toml(p, "topology"), nodes, name=p.name)
    if loss_pct is not None:
        topo = with_loss(topo, loss_pct)
    return topo


def with_loss(topo: Topology, loss_pct: float) -> Topology:
    """The same topology with every link's and region's loss set to ``loss_pct``."""
    from dataclasses import replace

    regions = [replace(r, inner=replace(r.inner, loss_pct=loss_pct)) for r in topo.regions]
    links = {k: replace(s, loss_pct=loss_pct) for k, s in topo.links.items()}
    return replace(topo, regions=regions, links=links)


def loopback(nodes: int) -> Topology:
    """No topology given: one region, no delay (the devnet as it always was)."""
    return parse_topology({"name": "loopback", "region": [{"name": "local"}]}, nodes)
