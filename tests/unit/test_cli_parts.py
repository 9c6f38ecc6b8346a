"""The CLI's pure parts: where it calls from a config, how it reads pod files, what it prints."""

from __future__ import annotations

import base64
import multiprocessing
import stat
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from interlink_cli.commands import nothing_created
from interlink_cli.endpoints import api_url, sidecar, vk_token_file
from interlink_cli.errors import USAGE, CLIFailure
from interlink_cli.output import NOT_CREATED, age, on_node, phase, status_row, table
from interlink_cli.pods_file import load_create_request
from interlink_cli.state import PodState
from interlink_common.api_client import APIError, APIUnreachable
from interlink_common.config import InterLinkConfig
from interlink_common.wire import PodStatus


@pytest.mark.parametrize(("keys", "url"), [
    ({"InterlinkAddress": "http://0.0.0.0", "InterlinkPort": 3000}, "http://127.0.0.1:3000"),
    ({"InterlinkAddress": "http://10.0.0.5:3001"}, "http://10.0.0.5:3001"),
    ({"InterlinkURL": "http://node.example", "InterlinkPort": "3000"},
     "http://node.example:3000"),
    ({"InterlinkAddress": "unix:///run/interlink/api.sock"}, "unix:///run/interlink/api.sock"),
    # The VK's own config (upstream's keys): the URL it dials, no TLS files of the server's.
    ({"InterlinkURL": "https://gpu-node-1.example.org", "InterlinkPort": "3000"},
     "https://gpu-node-1.example.org:3000"),
    ({"InterlinkURL": "https://0.0.0.0", "InterlinkPort": "3000"}, "https://127.0.0.1:3000"),
])
def test_the_api_url_is_where_the_server_listens(keys: dict, url: str) -> None:
    assert api_url(InterLinkConfig.model_validate(keys)) == url


def test_a_config_without_a_port_is_a_usage_error() -> None:
    with pytest.raises(CLIFailure) as err:
        api_url(InterLinkConfig.model_validate({"InterlinkAddress": "http://127.0.0.1"}))
    assert err.value.code == USAGE and "port" in str(err.value)


def test_the_vk_token_file_and_the_sidecar_come_from_the_same_file() -> None:
    cfg = InterLinkConfig.model_validate({"VKTokenFile": "/t", "SidecarURL": "http://h",
                                          "SidecarPort": 4001, "PluginTokenFile": "/p"})
    assert vk_token_file(cfg) == "/t" and vk_token_file(InterLinkConfig()) is None
    assert sidecar(cfg).base == "http://h:4001" and sidecar(cfg).token_file == "/p"
    assert sidecar(InterLinkConfig(Socket="unix:///s.sock")).base == "unix:///s.sock"


def test_a_file_of_several_documents(tmp_path: Path) -> None:
    f = tmp_path / "all.yaml"
    f.write_text("kind: List\nitems:\n- kind: ConfigMap\n  metadata: {name: c}\n"
                 "- kind: Secret\n  metadata: {name: s, namespace: other}\n"
                 "  data: {a: YQ==}\n  stringData: {b: bee}\n"
                 "---\nkind: Pod\nmetadata: {name: p}\n"
                 "spec: {containers: [{name: one, image: i}, {name: two, image: i}]}\n")
    req = load_create_request([str(f)])
    assert req.namespace == "default" and uuid.UUID(req.uid).version == 4
    assert req.container_names() == ["one", "two"]
    assert req.configmaps[0]["metadata"] == {"name": "c", "namespace": "default"}
    s = req.secrets[0]
    assert s["metadata"]["namespace"] == "other" and "stringData" not in s
    assert base64.b64decode(s["data"]["b"]) == b"bee" and s["data"]["a"] == "YQ=="


def test_a_kept_uid_and_refused_files(tmp_path: Path) -> None:
    pod = tmp_path / "p.json"
    pod.write_text('{"kind": "Pod", "metadata": {"name": "p", "namespace": "n", "uid": "u-1"},'
                   ' "spec": {"containers": [{"name": "c", "image": "i"}]}}')
    assert load_create_request([str(pod)]).uid == "u-1"
    cm = tmp_path / "cm.yaml"
    cm.write_text("kind: Secret\nmetadata: {name: x}\n")
    with pytest.raises(CLIFailure, match="is not ConfigMap"):
        load_create_request([str(pod)], [str(cm)])
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: Pod\nmetadata: {name: p}\nspec: {}\n")
    with pytest.raises(CLIFailure, match="no spec.containers"):
        load_create_request([str(bad)])
    with pytest.raises(CLIFailure, match="cannot read"):
        load_create_request([str(tmp_path / "missing.yaml")])


def test_the_state_file_is_private_and_atomic(tmp_path: Path) -> None:
    state = PodState(tmp_path / "dir" / "pods.json")
    state.remember({"name": "p", "namespace": "n", "uid": "u"})
    assert (state.path.stat().st_mode & 0o777) == 0o600
    assert state.find("p", "n")["uid"] == "u" and state.find("n/p", "other")["uid"] == "u"
    # No temporary file left; the lock beside it, as private as the state.
    assert sorted(state.path.parent.iterdir()) == [state.path, state.lock_path]
    assert stat.S_IMODE(state.lock_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(state.path.parent.stat().st_mode) == 0o700
    state.forget("n/p")
    with pytest.raises(CLIFailure, match="n/p is not known"):
        state.find("p", "n")


def remember_many(path: Path, worker: int, count: int, start: Any) -> None:
    """One of several processes remembering pods of its own at the same time."""
    state = PodState(path)
    start.wait()
    for i in range(count):
        state.remember({"name": f"p{worker}-{i}", "namespace": "n", "uid": f"u{worker}-{i}"})


def claim_one(path: Path, worker: int, start: Any, won: Any) -> None:
    start.wait()
    if PodState(path).claim({"name": "same", "namespace": "n", "uid": f"u{worker}"}) is None:
        with won.get_lock():
            won.value += 1


def run_all(target: Any, args: list[tuple[Any, ...]]) -> None:
    procs = [FORK.Process(target=target, args=a) for a in args]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0, p


FORK = multiprocessing.get_context("fork")
WORKERS = 6


def test_changes_made_at_once_lose_no_entry(tmp_path: Path) -> None:
    path = tmp_path / "pods.json"
    start = FORK.Barrier(WORKERS)
    run_all(remember_many, [(path, w, 25, start) for w in range(WORKERS)])
    assert len(PodState(path).load()) == WORKERS * 25


def test_one_name_is_claimed_once(tmp_path: Path) -> None:
    path = tmp_path / "pods.json"
    start, won = FORK.Barrier(WORKERS), FORK.Value("i", 0)
    run_all(claim_one, [(path, w, start, won) for w in range(WORKERS)])
    assert won.value == 1 and list(PodState(path).load()) == ["n/same"]


def test_a_pending_entry_settles_or_is_forgotten_by_uid(tmp_path: Path) -> None:
    state = PodState(tmp_path / "pods.json")
    entry = {"name": "p", "namespace": "n", "uid": "u", "pending": True}
    assert state.claim(entry) is None
    assert state.claim({**entry, "uid": "v"}) == entry  # the name is held, pending or not
    state.settle("n/p", "other-uid")
    assert state.find("n/p", "")["pending"] is True
    state.settle("n/p", "u")
    assert "pending" not in state.find("n/p", "")
    state.forget("n/p", "other-uid")
    assert state.find("n/p", "")["uid"] == "u"
    state.forget("n/p", "u")
    assert state.load() == {}


@pytest.mark.parametrize(("exc", "nothing"), [
    (APIUnreachable("/create", "connection refused", sent=False), True),
    (APIError("(token)", 0, "cannot read the token file"), True),
    (APIError("/create", 422, "privileged"), True),
    (APIError("/create", 401, "unauthorized"), True),
    (APIError("/create", 307, "elsewhere"), True),
    (APIUnreachable("/create", "timed out"), False),
    (APIError("/create", 500, "plugin timed out"), False),
    (APIError("/create", 504, "gateway timeout"), False),
    (APIError("/create", 200, "the answer is not JSON"), False),
    (KeyboardInterrupt(), False),
])
def test_which_failed_creates_certainly_made_no_pod(exc: BaseException, nothing: bool) -> None:
    assert nothing_created(exc) is nothing


def test_a_pending_pod_the_node_does_not_know_is_not_created() -> None:
    gone = PodStatus.model_validate({"UID": "u", "containers": [{"name": "c", "state": {
        "terminated": {"exitCode": 137, "reason": "NotFound"}}}]})
    running = PodStatus.model_validate({"UID": "u", "containers": [
        {"name": "c", "state": {"running": {}}}]})
    assert [on_node(s) for s in (None, gone, running)] == [False, False, True]
    pending = {"name": "p", "namespace": "n", "uid": "u", "pending": True}
    assert status_row(pending, None)[2] == NOT_CREATED
    assert status_row(pending, gone)[2] == NOT_CREATED
    assert status_row(pending, running)[2] == "Running"
    assert status_row({**pending, "pending": False}, None)[2] == "NotOnNode"


def test_phases_and_ages_as_kubectl_shows_them() -> None:
    running = PodStatus.model_validate({"containers": [
        {"name": "a", "state": {"running": {}}}, {"name": "b", "state": {"terminated": {}}}]})
    failed = PodStatus.model_validate({"containers": [
        {"name": "a", "state": {"terminated": {"exitCode": 3}}}]})
    init = PodStatus.model_validate({"initContainers": [{"name": "i", "state": {
        "waiting": {"reason": "PodInitializing"}}}], "containers": [
        {"name": "a", "state": {"waiting": {}}}]})
    assert [phase(s) for s in (running, failed, init, None)] == \
        ["Running", "Failed", "Pending", "NotOnNode"]
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert age((now - timedelta(seconds=75)).isoformat(), now) == "1m"
    assert age((now - timedelta(hours=50)).isoformat(), now) == "2d" and age(None) == "-"
    assert table(("A", "LONGER"), [["xyz", 1]]) == "A     LONGER\nxyz   1"


def test_the_apis_ca_file_is_loaded_or_refused_by_name(tmp_path: Path) -> None:
    import ssl

    from interlink_cli.endpoints import api_verify

    assert api_verify(None, "https://node.example.org:3000") is True
    with pytest.raises(CLIFailure) as err:
        api_verify(None, "https://node.example.org:3000", str(tmp_path / "missing.pem"))
    assert err.value.code == USAGE and "--api-ca-file" in str(err.value)
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    with pytest.raises(CLIFailure, match="bad.pem"):
        api_verify(None, "https://node.example.org:3000", str(bad))
    import certifi  # httpx's own CA bundle: a file of real CA certificates

    assert isinstance(api_verify(None, "https://node.example.org:3000", certifi.where()),
                      ssl.SSLContext)


def test_health_tells_the_service_from_pid_1s_command_line() -> None:
    from interlink_cli.health import service_of

    assert service_of(b"/opt/interlink/bin/python\0/opt/interlink/bin/docker-sidecar\0") \
        == "sidecar"
    assert service_of(b"/sbin/docker-init\0--\0interlink-api\0") == "api"
    assert service_of(b"python3\0-m\0docker_sidecar\0--config\0x.yaml\0") == "sidecar"
    assert service_of(b"sleep\0infinity\0") is None
    assert service_of(b"\xff\xfe\0") is None


def test_tokens_in_clear_only_for_plain_http_on_a_network_address() -> None:
    from interlink_common.config import TLSConfig
    from interlink_common.listen import api_listener, tokens_in_clear_warning

    def warning(address: str, *, oidc: bool = True, tls: TLSConfig | None = None) -> str | None:
        listener = api_listener(address, "", 3000, tls or TLSConfig())
        return tokens_in_clear_warning(listener, checks_tokens=oidc)

    assert "plain HTTP" in (warning("http://0.0.0.0") or "")
    assert "TLS.Enabled" in (warning("http://10.0.0.5") or "")
    assert warning("http://127.0.0.1") is None
    assert warning("unix:///run/interlink-api/api.sock") is None
    assert warning("http://0.0.0.0", oidc=False) is None  # no tokens to leak
    assert warning("https://0.0.0.0", tls=TLSConfig(CertFile="c", KeyFile="k")) is None


def test_health_reads_pid_1_or_asks_for_the_service(tmp_path: Path) -> None:
    from interlink_cli.health import detect_service

    cmdline = tmp_path / "cmdline"
    cmdline.write_bytes(b"/opt/interlink/bin/python\0/opt/interlink/bin/interlink-api\0")
    assert detect_service(cmdline) == "api"
    cmdline.write_bytes(b"/bin/sh\0")
    with pytest.raises(CLIFailure, match="name the service") as err:
        detect_service(cmdline)
    assert err.value.code == USAGE
    with pytest.raises(CLIFailure, match="name the service"):
        detect_service(tmp_path / "absent")


def test_only_the_servers_own_certificate_is_pinned(tmp_path: Path) -> None:
    """A full-chain CertFile: the server's certificate is the anchor, not its issuer's."""
    import ssl

    from interlink_cli.endpoints import api_verify
    from test_api_auth_process import _cert

    ca, ca_key, ca_pem, _ = _cert(tmp_path, "ca", ca=True)
    _, _, leaf_pem, _ = _cert(tmp_path, "leaf", issuer_cert=ca, issuer_key=ca_key)
    chain = tmp_path / "fullchain.pem"
    chain.write_text(Path(leaf_pem).read_text() + Path(ca_pem).read_text())
    cfg = InterLinkConfig.model_validate({"TLS": {"Enabled": True, "CertFile": str(chain),
                                                   "KeyFile": "k"}})
    context = api_verify(cfg, "https://127.0.0.1:3000")
    assert isinstance(context, ssl.SSLContext) and not context.check_hostname
    # One anchor, and not the CA: certificates the CA signs for others do not chain to it.
    assert context.cert_store_stats() == {"crl": 0, "x509": 1, "x509_ca": 0}
    # Not on loopback: no pin, the system's store.
    assert api_verify(cfg, "https://gpu-node-1.example.org:3000") is True
