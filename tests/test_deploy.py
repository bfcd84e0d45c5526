"""deploy/: the alert rules (promtool's check and its unit tests of every alert's firing),
the Prometheus config, the Grafana dashboard, the Dockerfile, the compose network, the
systemd unit's hardening (systemd-analyze's exposure score), and the rule that a test
whose system tool is missing skips on a laptop, is listed loudly, and fails in CI."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from muxernode.metrics import NodeMetrics
from tests.conftest import require_tool

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
RULES = DEPLOY / "prometheus" / "alerts.yml"


def _run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=60,
                          cwd=cwd, check=False)


def test_promtool_checks_the_alert_rules() -> None:
    promtool = require_tool("promtool")
    done = _run(promtool, "check", "rules", RULES)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 9 rules found" in done.stdout


def test_every_alert_fires_as_its_unit_test_says() -> None:
    promtool = require_tool("promtool")
    done = _run(promtool, "test", "rules", "alerts_test.yml", cwd=RULES.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_promtool_checks_the_prometheus_config(tmp_path: Path) -> None:
    promtool = require_tool("promtool")
    text = (DEPLOY / "prometheus" / "prometheus.yml").read_text()
    # the compose file mounts the rules at /etc/prometheus; point at the repository's copy
    assert "/etc/prometheus/alerts.yml" in text
    (tmp_path / "prometheus.yml").write_text(text.replace("/etc/prometheus/alerts.yml",
                                                          str(RULES)))
    done = _run(promtool, "check", "config", tmp_path / "prometheus.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    for node in ("n1", "n2", "n3", "n4"):
        assert f'"{node}:8545"' in text


def _node_series() -> set[str]:
    """Every series name a node exposes on /metrics, and Prometheus' own ``up``."""
    names = {"up"}
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}
    for family in text_string_to_metric_families(NodeMetrics().render().decode()):
        # a labelled family without children yet has no samples: names from its type
        names.update(family.name + s for s in suffixes.get(family.type, [""]))
        names.update(sample.name for sample in family.samples)
    return names


def _series_in(expr: str) -> set[str]:
    # metric names: identifiers outside label matchers ({...}) that are not functions
    bare = re.sub(r"\{[^}]*\}", "", expr)
    words = set(re.findall(r"\b([a-z_][a-z0-9_]*)\b(?!\s*\()", bare))
    return {w for w in words if w.startswith("muxer_") or w == "up"}


def test_rules_and_dashboard_use_only_series_the_node_exposes() -> None:
    exposed = _node_series()
    exprs = [m.group(1) for m in re.finditer(r"expr: (.+)", RULES.read_text())]
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "muxernode.json").read_text())
    exprs += [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(exprs) > 20
    used: set[str] = set()
    for expr in exprs:
        names = _series_in(expr)
        assert names, f"no series in {expr!r}"
        assert names <= exposed, f"{expr!r} uses {names - exposed}, not exposed by the node"
        used |= names
    # the chain's essentials are on the dashboard and in the alerts
    assert {"muxer_head_height", "muxer_final_height", "muxer_peers", "up",
            "muxer_storage_failing", "muxer_block_apply_seconds_bucket"} <= used


def test_dashboard_is_provisioned_with_its_datasource() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "muxernode.json").read_text())
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)) >= 12
    datasource = (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml")
    uid = re.search(r"uid: (\S+)", datasource.read_text())
    assert uid is not None
    assert {p["datasource"]["uid"] for p in dashboard["panels"]} == {uid.group(1)}
    provider = (DEPLOY / "grafana" / "provisioning" / "dashboards" / "muxernode.yml").read_text()
    compose = (DEPLOY / "docker-compose.yml").read_text()
    mounted = re.search(r"path: (\S+)", provider)
    assert mounted is not None and f"./grafana/dashboards:{mounted.group(1)}:ro" in compose


def test_dockerfile_runs_unprivileged_with_a_volume_and_a_health_check() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.1\d-slim", text, re.M)
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r'^VOLUME \["/data"\]', text, re.M)
    health = re.search(r"^HEALTHCHECK .*\n(?:.*\n)*?.*CMD (.*)$", text, re.M)
    assert health is not None and "127.0.0.1:8545/health" in health.group(1)
    # every path the image copies exists (a build would fail on a missing one)
    copies = re.findall(r"^COPY (.+)$", text, re.M)
    assert len(copies) >= 6
    for line in copies:
        *sources, _dest = [w for w in line.split() if not w.startswith("--")]
        for path in sources:
            assert (REPO / path).exists(), path
    entry = DEPLOY / "docker-entrypoint.sh"
    assert os.access(entry, os.X_OK)
    assert _run("sh", "-n", entry).returncode == 0


def test_compose_runs_four_witnesses_that_peer_with_each_other() -> None:
    text = (DEPLOY / "docker-compose.yml").read_text()
    nodes = ["n1", "n2", "n3", "n4"]
    for i, name in enumerate(nodes):
        block = re.search(rf"^  {name}:\n((?:    .*\n|\s*\n)+)", text, re.M)
        assert block is not None, name
        body = block.group(1)
        assert f"/genesis/w{i + 1}.key" in body
        peers = set(re.findall(r'--peer, "(n\d):9000"', body))
        assert peers == set(nodes) - {name}, (name, peers)
        assert f"{name}:/data" in body
    assert "--witnesses 4" in text
    for service in ("prometheus:", "grafana:"):
        assert f"\n  {service}" in text


def test_systemd_unit_is_hardened() -> None:
    tool = require_tool("systemd-analyze")
    unit = DEPLOY / "systemd" / "muxernode.service"
    text = unit.read_text()
    assert re.search(r"^User=muxer$", text, re.M)
    done = _run(tool, "security", "--offline=yes", unit)
    score = re.search(r"Overall exposure level for muxernode.service: ([\d.]+)", done.stdout)
    assert score is not None, done.stdout + done.stderr
    # systemd rates 0 (fully confined) to 10 (unprotected); an unhardened unit is 9.6
    assert float(score.group(1)) <= 2.0, done.stdout


# --- tests/conftest.py's rule for missing tools ----------------------------------------------


def _pytest_on(tmp_path: Path, ci: bool) -> subprocess.CompletedProcess[str]:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_needs_tool.py").write_text(
        "from tests.conftest import require_tool\n\n"
        "def test_needs_it():\n    require_tool('muxer-no-such-tool')\n\n"
        "def test_needs_python():\n    assert require_tool('sh')\n")
    env = {k: v for k, v in os.environ.items() if k != "MUXER_CI"}
    env["PYTHONPATH"] = str(REPO)
    if ci:
        env["MUXER_CI"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "tests.conftest",
         "-c", str(tmp_path / "pytest.ini"), "--rootdir", str(tmp_path),
         str(tmp_path / "test_needs_tool.py")],
        capture_output=True, text=True, timeout=60, env=env, check=False)


def test_a_missing_tool_skips_loudly_on_a_laptop(tmp_path: Path) -> None:
    done = _pytest_on(tmp_path, ci=False)
    assert done.returncode == 0, done.stdout
    assert "1 TEST(S) SKIPPED: these checks did not run" in done.stdout
    assert "test_needs_it: muxer-no-such-tool is not installed" in done.stdout


def test_a_missing_tool_fails_in_ci(tmp_path: Path) -> None:
    done = _pytest_on(tmp_path, ci=True)
    assert done.returncode == 1, done.stdout
    assert "1 failed, 1 passed" in done.stdout
    assert "MUXER_CI=1 makes a missing tool a failure" in done.stdout
