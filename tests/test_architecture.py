"""The layout is the architecture: the core never imports a service.

``market_bridge.cli`` is the composition root (the `market-bridge` entry point): it may
import the services, lazily, inside the commands that start them. Nothing else in the
core may.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVICES = {"api", "streaming", "flows"}


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_core_never_imports_a_service() -> None:
    offenders = []
    for path in (ROOT / "market_bridge").rglob("*.py"):
        if "cli" in path.relative_to(ROOT / "market_bridge").parts[:1]:
            continue
        bad = imported_roots(path) & SERVICES
        if bad:
            offenders.append(f"{path.relative_to(ROOT)} imports {sorted(bad)}")
    assert not offenders, "\n".join(offenders)


def test_services_do_not_import_each_other() -> None:
    offenders = []
    for service in SERVICES:
        for path in (ROOT / service).rglob("*.py"):
            bad = imported_roots(path) & (SERVICES - {service})
            if bad:
                offenders.append(f"{path.relative_to(ROOT)} imports {sorted(bad)}")
    assert not offenders, "\n".join(offenders)
