"""/getLogs options -> Docker log parameters, and Kubernetes limitBytes (the first N bytes)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone

import pytest

from docker_sidecar.logs import LogParams, first_bytes, log_params
from interlink_common.wire import GO_ZERO_TIME, ContainerLogOpts

NOW = 1_741_083_340.0  # 2025-03-04T10:15:40Z


def params(**opts: object) -> LogParams:
    return log_params(ContainerLogOpts.model_validate(opts), now=NOW)


def test_defaults_select_everything() -> None:
    assert params() == LogParams(follow=False, tail=None, timestamps=False, since=None,
                                 limit_bytes=None)


def test_flags_pass_through() -> None:
    p = params(Follow=True, Timestamps=True)
    assert (p.follow, p.timestamps) == (True, True)


@pytest.mark.parametrize(("seconds", "since"), [(1, NOW - 1), (60, NOW - 60),
                                                (3600, NOW - 3600)])
def test_since_seconds_is_a_window_ending_now(seconds: int, since: float) -> None:
    assert params(SinceSeconds=seconds).since == since


def test_since_seconds_uses_the_clock_without_now() -> None:
    import time

    before = time.time()
    since = log_params(ContainerLogOpts(SinceSeconds=30)).since
    assert since is not None and before - 30 <= since <= time.time() - 30


@pytest.mark.parametrize("value", ["2025-03-04T10:00:00Z", "2025-03-04T11:00:00+01:00"])
def test_since_time_is_its_timestamp(value: str) -> None:
    expected = datetime(2025, 3, 4, 10, 0, tzinfo=timezone.utc).timestamp()
    assert params(SinceTime=value).since == expected


def test_go_zero_since_time_means_unset() -> None:
    assert params(SinceTime=GO_ZERO_TIME).since is None


def test_since_seconds_wins_over_since_time() -> None:
    assert params(SinceSeconds=10, SinceTime="2020-01-01T00:00:00Z").since == NOW - 10


@pytest.mark.parametrize(("tail", "expected"), [(0, None), (-1, None), (1, 1), (100, 100)])
def test_tail(tail: int, expected: int | None) -> None:
    assert params(Tail=tail).tail == expected


@pytest.mark.parametrize(("limit", "expected"), [(0, None), (-5, None), (1, 1), (4096, 4096)])
def test_bytes_is_the_limit(limit: int, expected: int | None) -> None:
    assert params(Bytes=limit).limit_bytes == expected


# --- first_bytes ----------------------------------------------------------------------------------

CHUNKS = [b"hello ", b"wide ", b"world\n"]  # 6 + 5 + 6 = 17 bytes


@pytest.mark.parametrize(("limit", "expected"), [
    (1, b"h"),
    (6, b"hello "),          # exactly at a chunk boundary
    (7, b"hello w"),         # one byte into the next chunk
    (11, b"hello wide "),
    (16, b"hello wide world"),
    (17, b"hello wide world\n"),
    (1000, b"hello wide world\n"),
    (None, b"hello wide world\n"),
])
def test_first_bytes(limit: int | None, expected: bytes) -> None:
    out = list(first_bytes(iter(CHUNKS), limit))
    assert b"".join(out) == expected
    assert all(out)  # no empty chunks written


def test_none_passes_chunks_unchanged() -> None:
    assert list(first_bytes(iter(CHUNKS), None)) == CHUNKS


def test_zero_limit_gives_nothing() -> None:
    assert list(first_bytes(iter(CHUNKS), 0)) == []


def counted(chunks: list[bytes], pulled: list[bytes]) -> Iterator[bytes]:
    for chunk in chunks:
        pulled.append(chunk)
        yield chunk


@pytest.mark.parametrize(("limit", "pulled_count"), [(3, 1), (6, 1), (7, 2), (11, 2)])
def test_first_bytes_stops_reading_once_the_limit_is_reached(limit: int,
                                                             pulled_count: int) -> None:
    pulled: list[bytes] = []
    source = counted(CHUNKS + [b"never read"], pulled)
    assert len(b"".join(first_bytes(source, limit))) == limit
    assert len(pulled) == pulled_count


def test_first_bytes_works_on_an_endless_follow_stream() -> None:
    def endless() -> Iterator[bytes]:
        while True:
            yield b"tick\n"

    assert b"".join(first_bytes(endless(), 12)) == b"tick\ntick\nti"
