"""Secrets never reach a log line, in the default text mode too.

Logs are read by more people than tokens should be (operators, log shippers, support tickets).
The attacks: an exception whose message quotes a request header (as HTTP libraries' errors
do), logged with its traceback by our code or by uvicorn; a plugin that echoes the shared
token in an error body the API relays and logs. The real programs' logging set-up is run in a
child process and its stderr is read."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from procs import ROOT, env_for_children, start_api, write_config

BEARER = "Bearer s3cr3t.t0ken-value_XYZ"
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ"
PLUGIN_TOKEN = "7d1e5b3a9c0f2e4d6b8a0c2e4f6a8b0d"  # hex: looks like nothing in particular

# Starts logging as both programs do (program.start reads the config and sets up logging),
# builds uvicorn's Config as serve() does, then logs what libraries and uvicorn log.
_PROGRAM = textwrap.dedent('''
    import logging, sys
    import uvicorn
    from interlink_common.program import start
    from interlink_common.plugin_auth import TokenFile

    cfg = start("interlink-api", None, ["--config", sys.argv[1]])
    TokenFile(cfg.PluginTokenFile)
    uvicorn.Config(lambda *a: None, log_config=None, access_log=False)

    def fail():
        raise RuntimeError("sending header Authorization: {bearer} id_token={jwt} "
                           "plugin token={plugin}")

    try:
        fail()
    except RuntimeError:
        logging.getLogger("interlink.api").exception("/create failed")
        logging.getLogger("uvicorn.error").error("Exception in ASGI application",
                                                 exc_info=True)
    def where(note):
        logging.getLogger("interlink.api").warning("where: %s", "here", stack_info=True)

    where("header Authorization: {bearer} plugin token={plugin}")
    print("END", file=sys.stderr)
''').format(bearer=BEARER, jwt=JWT, plugin=PLUGIN_TOKEN)


def run_program(tmp: Path, **config: Any) -> str:
    token = tmp / "plugin.token"
    token.write_text(PLUGIN_TOKEN)
    cfg = write_config(tmp / "cfg.yaml", {"PluginTokenFile": str(token), **config})
    program = tmp / "program.py"  # a file, so tracebacks show its source lines too
    program.write_text(_PROGRAM)
    out = subprocess.run([sys.executable, str(program), str(cfg)], capture_output=True,
                         text=True, env=env_for_children(), cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stderr


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_tracebacks_are_scrubbed(tmp_path: Path, fmt: str) -> None:
    err = run_program(tmp_path, LogFormat=fmt)
    assert "END" in err
    # The records and their tracebacks are there, uvicorn's included...
    assert err.count("RuntimeError: sending header Authorization: Bearer [redacted]") == 2
    assert "Exception in ASGI application" in err and "/create failed" in err
    assert "in fail" in err and "raise RuntimeError(" in err
    # ...but none of the secrets.
    for secret in ("s3cr3t", JWT, JWT.split(".")[1], PLUGIN_TOKEN):
        assert secret not in err, secret


def test_stack_text_is_scrubbed_in_text_mode(tmp_path: Path) -> None:
    """stack_info prints the source lines of the stack, here the line holding the secrets."""
    err = run_program(tmp_path)
    assert "Stack (most recent call last)" in err and 'where("header Authorization' in err
    assert "s3cr3t" not in err and PLUGIN_TOKEN not in err


def test_plugin_echoing_the_token_reaches_neither_log_nor_vk(tmp_path: Path,
                                                             plugin: Any) -> None:
    """A plugin's error body is relayed to the VK and logged: a plugin that echoes what it was
    sent (the shared token, a header) must not leak it to either."""
    token = tmp_path / "plugin.token"
    token.write_text(PLUGIN_TOKEN)
    host, port = plugin.base.rsplit(":", 1)
    api = start_api(tmp_path, {"SidecarURL": host, "SidecarPort": int(port),
                               "PluginTokenFile": str(token)})
    try:
        plugin.program("/status", status=500,
                       body=f"refused: got token {PLUGIN_TOKEN} in header {BEARER}; "
                            f"cached {JWT}")
        with api.client(timeout=30) as c:
            r = c.post("/pinglink")
        assert r.status_code == 500
        assert "refused: got token [redacted]" in r.text
        for secret in (PLUGIN_TOKEN, "s3cr3t", JWT):
            assert secret not in r.text
    finally:
        api.stop()
    log = api.output()
    assert "answered HTTP 500: refused: got token [redacted]" in log
    for secret in (PLUGIN_TOKEN, "s3cr3t", JWT):
        assert secret not in log
