"""Agent-based simulation of MUXER mutual-aid societies over the real ledger (issue 17).

``python -m devnet society`` (cli.py) builds a ``Config`` (model.py), runs a ``Society``
(agents.py) on the in-process ledger (driver.py) and writes report.json, report.md and the
plots (report.py), or a grid of runs (sweep.py). docs/society-economics.md is the guide.
"""

from .agents import Society
from .model import Behaviour, Config, ConfigError, parse_rules, parse_sweep
from .report import build_report

__all__ = ["Behaviour", "Config", "ConfigError", "Society", "build_report", "parse_rules",
           "parse_sweep"]
