"""Suite-wide rules: tests that need a system tool, and a loud list of what was skipped.

A test that needs a program outside the virtualenv (Prometheus, promtool, Chromium) calls
``require_tool(name)``: on a developer's machine without it the test is skipped, and
``make test`` ends with a list of every skipped test and why, so a green run that left
half its checks out is visible. Under ``MUXER_CI=1`` (set by ``.ci/run``, which installs
the tools first) a missing tool FAILS the test instead: CI must not pass by skipping.
"""

from __future__ import annotations

import os
import shutil

import pytest

__all__ = ["CI_ENV", "require_tool"]

CI_ENV = "MUXER_CI"
# the Debian package that provides each tool (what .ci/run installs)
PACKAGES = {"prometheus": "prometheus", "promtool": "prometheus", "chromium": "chromium",
            "systemd-analyze": "systemd"}


def in_ci() -> bool:
    return os.environ.get(CI_ENV, "") not in ("", "0")


def require_tool(name: str) -> str:
    """The path of the program ``name``; skip the test without it (fail it in CI)."""
    path = shutil.which(name)
    if path is not None:
        return path
    package = PACKAGES.get(name, name)
    reason = (f"{name} is not installed (apt-get install --no-install-recommends {package}, "
              "or run .ci/run, which installs it)")
    if in_ci():
        pytest.fail(f"{reason}; {CI_ENV}=1 makes a missing tool a failure", pytrace=False)
    pytest.skip(reason)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int,
                            config: pytest.Config) -> None:
    skipped = terminalreporter.stats.get("skipped", [])
    if not skipped:
        return
    terminalreporter.write_sep("!", f"{len(skipped)} TEST(S) SKIPPED: these checks did not run",
                               red=True, bold=True)
    for report in skipped:
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        reason = reason.removeprefix("Skipped: ")
        terminalreporter.write_line(f"  {report.nodeid}: {reason}", yellow=True, bold=True)
    terminalreporter.write_sep("!", f"install what they need, or run with {CI_ENV}=1 to make "
                               "them fail", red=True, bold=True)
