"""Every test here is an attack on the node, made the way a hostile tenant would make it; the
outcome is checked from outside (the host's filesystem, ``docker inspect``, another host user)."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.security)
