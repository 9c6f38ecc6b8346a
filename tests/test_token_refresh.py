"""The VK's token refresher against the test OIDC issuer's token endpoint: client credentials
and refresh tokens, the file replaced atomically and accepted by the real API server, a
refused client said in words with the old file kept, and the loop renewing before expiry."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from interlink_cli.token_refresh import TokenError, TokenRefresher, TokenSettings
from interlink_common.api_client import InterLinkClient
from oidc_issuer import start_issuer
from procs import env_for_children, start_oidc_api

GROUPS = {"wlcg.groups": ["/interlink"]}


@pytest.fixture(scope="module")
def issuer():
    iss = start_issuer()
    iss.clients["vk-client"] = "s3cret-value"
    iss.grant_claims = GROUPS
    yield iss
    iss.stop()


@pytest.fixture(scope="module")
def api(issuer, fake_plugin, tmp_path_factory):
    proc = start_oidc_api(tmp_path_factory.mktemp("api"), fake_plugin.proc.base, issuer.url)
    yield proc
    proc.stop()


def settings(issuer, tmp: Path, **kw) -> TokenSettings:
    secret = tmp / "client-secret"
    secret.write_text("s3cret-value\n")
    return TokenSettings(issuer=issuer.url, client_id=kw.pop("client_id", "vk-client"),
                         client_secret_file=secret, out=tmp / "vk-token", **kw)


def accepted(api, token_file: Path) -> bool:
    async def ping() -> str:
        async with InterLinkClient(api.base, token_file=str(token_file)) as client:
            return (await client.ping()).status
    return asyncio.run(ping()) == "ok"


def test_client_credentials_write_a_token_the_api_accepts(issuer, api, tmp_path) -> None:
    s = settings(issuer, tmp_path, scope="openid", audience="users")
    fresh = TokenRefresher(s).refresh()
    assert (s.out.stat().st_mode & 0o777) == 0o600
    assert accepted(api, s.out)
    assert fresh.expires_at - time.time() == pytest.approx(300, abs=5)
    assert issuer.token_requests[-1] == {"client_id": "vk-client", "grant_type":
                                         "client_credentials", "scope": "openid",
                                         "audience": "users"}
    # Replaced, not rewritten: a reader holding the old file still reads a whole token.
    old = s.out.open()
    inode = os.fstat(old.fileno()).st_ino
    TokenRefresher(s).refresh()
    assert os.stat(s.out).st_ino != inode and old.read().count(".") == 2
    old.close()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    # For a VK running as another user of the file's group.
    TokenRefresher(dataclasses.replace(s, mode=0o640)).refresh()
    assert (s.out.stat().st_mode & 0o777) == 0o640


def test_a_refresh_token_is_used_once_and_rotated_in_its_file(issuer, api, tmp_path) -> None:
    rt = tmp_path / "refresh-token"
    rt.write_text(issuer.refresh_token_for("vk-client"))
    first = rt.read_text()
    s = settings(issuer, tmp_path, grant="refresh_token", refresh_token_file=rt)
    TokenRefresher(s).refresh()
    assert accepted(api, s.out)
    assert rt.read_text().strip() != first and (rt.stat().st_mode & 0o777) == 0o600
    TokenRefresher(s).refresh()  # the rotated one works; the spent one would not

    rt.write_text(first)
    with pytest.raises(TokenError, match="refused client 'vk-client' .*invalid_grant"):
        TokenRefresher(s).refresh()


def test_a_refused_client_is_said_in_words_and_the_old_token_stays(issuer, tmp_path) -> None:
    good = settings(issuer, tmp_path)
    TokenRefresher(good).refresh()
    before = good.out.read_text()
    bad = settings(issuer, tmp_path, client_id="stranger")
    with pytest.raises(TokenError) as err:
        TokenRefresher(bad).refresh()
    assert "refused client 'stranger'" in str(err.value) and "invalid_client" in str(err.value)
    assert "s3cret" not in str(err.value)
    assert good.out.read_text() == before

    missing = TokenSettings(issuer=issuer.url, client_id="vk-client",
                            client_secret_file=tmp_path / "nope", out=tmp_path / "t")
    with pytest.raises(TokenError, match="cannot read the client secret file .*nope"):
        TokenRefresher(missing).refresh()
    down = TokenSettings(issuer="http://127.0.0.1:9", client_id="vk-client",
                         client_secret_file=good.client_secret_file, out=tmp_path / "t")
    with pytest.raises(TokenError, match="discovery document http://127.0.0.1:9/"):
        TokenRefresher(down).refresh()


def test_the_loop_renews_before_expiry(issuer, api, tmp_path) -> None:
    issuer.expires_in = 3
    try:
        s = settings(issuer, tmp_path)
        stop = threading.Event()
        loop = threading.Thread(target=TokenRefresher(s, margin=1).run, args=(stop,))
        loop.start()
        seen: set[str] = set()
        deadline = time.monotonic() + 30
        while len(seen) < 3:
            assert time.monotonic() < deadline, f"{len(seen)} tokens written"
            if s.out.exists():
                seen.add(s.out.read_text())
            time.sleep(0.1)
        stop.set()
        loop.join(10)
        assert not loop.is_alive()
        assert accepted(api, s.out)
    finally:
        issuer.expires_in = 300


def test_interlink_token_once_refused_and_as_a_loop(issuer, api, tmp_path) -> None:
    s = settings(issuer, tmp_path)
    base = [sys.executable, "-m", "interlink_cli", "token", "--issuer", issuer.url,
            "--client-id", "vk-client", "--client-secret-file", str(s.client_secret_file),
            "--out", str(s.out)]
    done = subprocess.run(base, env=env_for_children(), capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert accepted(api, s.out) and "s3cret" not in done.stderr + done.stdout
    token = s.out.read_text().strip()
    assert token and token not in done.stderr + done.stdout  # the token is never printed

    refused = subprocess.run([*base[:7], "stranger", *base[8:]], env=env_for_children(),
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1
    assert "refused client 'stranger'" in refused.stderr and "invalid_client" in refused.stderr

    issuer.expires_in = 3
    try:
        before = s.out.read_text()
        loop = subprocess.Popen([*base, "--loop", "--margin", "1"], env=env_for_children(),
                                stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while s.out.read_text() == before:
            assert time.monotonic() < deadline and loop.poll() is None
            time.sleep(0.1)
        loop.send_signal(signal.SIGTERM)
        assert loop.wait(20) == 0
        assert "wrote a token for client vk-client" in loop.stderr.read()
    finally:
        issuer.expires_in = 300
