"""VerboseLogging turns our own loggers to debug, and only those: the Docker SDK's, urllib3's
and httpx's debug lines (every API call and connection) stay out of an operator's log."""

from __future__ import annotations

import logging

import pytest

from interlink_common.logconfig import setup_logging

OURS = ("interlink.api", "interlink.sidecar.pods", "interlink.token")
THEIRS = ("docker.api.build", "urllib3.connectionpool", "httpx", "asyncio")


@pytest.fixture
def restored_logging():
    root = logging.getLogger()
    saved = root.handlers[:], root.level, {
        n: logging.getLogger(n).level for n in ("interlink", "httpx", "httpcore", "urllib3",
                                                  "docker", "asyncio", "authlib")}
    yield
    root.handlers[:], level, levels = saved
    root.setLevel(level)
    for name, lvl in levels.items():
        logging.getLogger(name).setLevel(lvl)


def test_verbose_is_for_our_loggers_only(restored_logging) -> None:
    setup_logging(verbose=True)
    assert all(logging.getLogger(n).isEnabledFor(logging.DEBUG) for n in OURS)
    assert not any(logging.getLogger(n).isEnabledFor(logging.DEBUG) for n in THEIRS)
    assert logging.getLogger("urllib3.connectionpool").isEnabledFor(logging.WARNING)


def test_without_verbose_ours_log_info_and_not_debug(restored_logging) -> None:
    setup_logging()
    assert all(logging.getLogger(n).isEnabledFor(logging.INFO) for n in OURS)
    assert not any(logging.getLogger(n).isEnabledFor(logging.DEBUG) for n in OURS + THEIRS)
    assert not logging.getLogger("httpx").isEnabledFor(logging.INFO)
