"""The operator CLI (``interlink``) as a subprocess against the real stack: the API server with
OIDC in front of the real sidecar (with fake GPUs) on the real engine."""

from __future__ import annotations

import json
import re
import signal
import stat
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from fake_gpus import dockerd_can_do_gpus, nvml_env
from kube import BUSYBOX
from oidc_issuer import start_issuer
from procs import (ROOT, Proc, env_for_children, free_port, start_api, start_oidc_api,
                   write_config)
from sidecars import Sidecar, start_test_sidecar

GROUPS = {"wlcg.groups": ["/interlink"]}
GPUS = [f"GPU-{uuid.UUID(int=i + 101)}" for i in range(2)]
VERSION = re.compile(r"^\S+ (\d+\.\d+\S*|unknown)$")


@dataclass
class Stack:
    api: Proc
    sidecar: Sidecar
    config: Path
    state: Path
    token: str
    tmp: Path


@pytest.fixture(scope="module")
def stack(docker_client, tmp_path_factory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("cli")
    dockerd_can_do_gpus(docker_client)
    env, lib = nvml_env(tmp, GPUS)
    sc = start_test_sidecar(tmp, docker_client, env=env,
                            policy={"GPU": {"Enabled": "on", "NVMLLibrary": lib}})
    issuer = start_issuer()
    host, port = sc.proc.base.rsplit(":", 1)
    api = start_oidc_api(tmp, sc.proc.base, issuer.url)
    token = issuer.token(GROUPS)
    token_file = tmp / "vk-token"
    token_file.write_text(token + "\n")
    # What an operator's node has: the servers' own file, the VK's token file named in it.
    config = write_config(tmp / "InterLinkConfig.yaml", {
        "InterlinkURL": "http://127.0.0.1", "InterlinkPort": int(api.base.rsplit(":", 1)[1]),
        "SidecarURL": host, "SidecarPort": int(port), "VKTokenFile": str(token_file)})
    yield Stack(api, sc, config, tmp / "state" / "pods.json", token, tmp)
    api.stop()
    issuer.stop()
    sc.proc.stop()
    sc.cleanup()


def cli(stack: Stack, *args: str, config: bool = True, timeout: float = 60,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    prefix = ["--config", str(stack.config)] if config else []
    return subprocess.run([sys.executable, "-m", "interlink_cli", *prefix, *args],
                          capture_output=True, text=True, timeout=timeout,
                          env=env_for_children(INTERLINK_CLI_STATE=str(stack.state),
                                               **(env or {})))


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    return result.stdout


def failed(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    return result.stderr


def wait_for(stack: Stack, pod: str, pattern: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while True:
        out = ok(cli(stack, "status", pod))
        if re.search(pattern, out):
            return out
        assert time.monotonic() < deadline, out
        time.sleep(0.3)


POD_YAML = f"""\
apiVersion: v1
kind: ConfigMap
metadata: {{name: greeting}}
data: {{greeting: hello from a configmap}}
---
apiVersion: v1
kind: Pod
metadata: {{name: cli-pod}}
spec:
  terminationGracePeriodSeconds: 0
  restartPolicy: Never
  containers:
  - name: main
    image: {BUSYBOX}
    command: [sh, -c, 'echo first; cat /cfg/greeting; echo; echo "$TOKEN"; exec sleep 3600']
    env:
    - name: TOKEN
      valueFrom: {{secretKeyRef: {{name: s, key: token}}}}
    volumeMounts: [{{name: cfg, mountPath: /cfg}}]
  volumes: [{{name: cfg, configMap: {{name: greeting}}}}]
"""


def test_versions_of_all_three_programs(stack: Stack) -> None:
    for module in ("interlink_cli", "interlink_api", "docker_sidecar"):
        out = subprocess.run([sys.executable, "-m", module, "--version"], capture_output=True,
                             text=True, env=env_for_children(), timeout=30)
        assert out.returncode == 0 and VERSION.match(out.stdout.strip()), (module, out)


def test_ping_shows_the_nodes_resources(stack: Stack) -> None:
    out = ok(cli(stack, "ping"))
    assert f"API {stack.api.base}: ok" in out
    assert re.search(r"CPU\s+MEMORY\s+PODS\s+GPUS", out)
    assert "nvidia.com/gpu=2" in out


def test_a_pod_from_file_to_delete(stack: Stack) -> None:
    pod_file = stack.tmp / "pod.yaml"
    pod_file.write_text(POD_YAML)
    secret_file = stack.tmp / "secret.yaml"
    secret_file.write_text("metadata: {name: s}\nstringData: {token: t0k}\n")

    out = ok(cli(stack, "create", "-f", str(pod_file), "--secret", str(secret_file)))
    created = re.fullmatch(r"pod default/cli-pod created \(uid ([0-9a-f-]{36})\)\n", out)
    assert created, out
    uid = created.group(1)
    assert stat.S_IMODE(stack.state.stat().st_mode) == 0o600
    remembered = json.loads(stack.state.read_text())["default/cli-pod"]
    assert (remembered["name"], remembered["namespace"], remembered["uid"]) == \
        ("cli-pod", "default", uid)
    again = failed(cli(stack, "create", "-f", str(pod_file), "--secret", str(secret_file)), 1)
    assert "already exists" in again

    table = wait_for(stack, "default/cli-pod", r"\bRunning\b")
    header, row = table.splitlines()
    assert header.split() == ["NAMESPACE", "NAME", "PHASE", "READY", "RESTARTS", "AGE",
                              "CONTAINERS"]
    assert row.split()[:5] == ["default", "cli-pod", "Running", "1/1", "0"]
    assert "main=Running" in row

    assert ok(cli(stack, "logs", "cli-pod")) == "first\nhello from a configmap\nt0k\n"
    assert ok(cli(stack, "logs", "--tail", "1", "-n", "default", "cli-pod", "main")) == "t0k\n"
    everything = ok(cli(stack, "status"))
    assert "cli-pod" in everything and "Running" in everything

    follow = subprocess.Popen(
        [sys.executable, "-m", "interlink_cli", "--config", str(stack.config), "logs", "-f",
         "cli-pod"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=env_for_children(INTERLINK_CLI_STATE=str(stack.state)))
    try:
        assert follow.stdout.readline() == "first\n"
        assert follow.stdout.readline() == "hello from a configmap\n"
    finally:
        follow.send_signal(signal.SIGINT)
        _, err = follow.communicate(timeout=20)
    assert follow.returncode == 0 and "Traceback" not in err, err

    assert ok(cli(stack, "delete", "cli-pod")) == f"pod default/cli-pod deleted (uid {uid})\n"
    assert "default/cli-pod" not in json.loads(stack.state.read_text())
    gone = failed(cli(stack, "status", "cli-pod"), 1)
    assert "pod default/cli-pod is not known" in gone


def test_gpus_shows_each_gpu_and_its_holder(stack: Stack) -> None:
    limits = {"nvidia.com/gpu": "1"}
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "gpu-pod", "namespace": "cli-tests"},
           "spec": {"terminationGracePeriodSeconds": 0, "containers": [{
               "name": "main", "image": BUSYBOX, "command": ["sleep", "3600"],
               "resources": {"limits": limits, "requests": limits}}]}}
    pod_file = stack.tmp / "gpu-pod.json"
    pod_file.write_text(json.dumps(pod))
    ok(cli(stack, "create", "-f", str(pod_file)))
    try:
        wait_for(stack, "cli-tests/gpu-pod", r"\bRunning\b")
        out = ok(cli(stack, "gpus"))
        assert "GPUs: 2 (1 free)" in out
        assert re.search(r"INDEX\s+UUID\s+NAME\s+MEMORY\s+UTIL\s+HOLDER", out)
        rows = {line.split()[1]: line for line in out.splitlines() if "GPU-" in line}
        assert set(rows) == set(GPUS), out
        assert sum("cli-tests/gpu-pod" in r for r in rows.values()) == 1, out
    finally:
        ok(cli(stack, "delete", "-n", "cli-tests", "gpu-pod"))


def test_a_refused_pod_names_the_field(stack: Stack) -> None:
    pod_file = stack.tmp / "privileged.yaml"
    pod_file.write_text(f"kind: Pod\nmetadata: {{name: bad-pod}}\nspec:\n  containers:\n"
                        f"  - {{name: main, image: {BUSYBOX}, securityContext: "
                        "{privileged: true}}\n")
    err = failed(cli(stack, "create", "-f", str(pod_file)), 1)
    assert "HTTP 422" in err and "privileged" in err
    assert not stack.state.exists() or "default/bad-pod" not in json.loads(stack.state.read_text())


def test_unknown_pods_and_usage_errors(stack: Stack) -> None:
    for args in (["status", "nope"], ["logs", "nope"], ["delete", "-n", "x", "nope"]):
        err = failed(cli(stack, *args), 1)
        assert "is not known" in err and "Traceback" not in err
    assert "required" in failed(cli(stack, "create"), 2)
    not_a_pod = stack.tmp / "cm.yaml"
    not_a_pod.write_text("kind: ConfigMap\nmetadata: {name: only}\n")
    assert "expected exactly one Pod" in failed(cli(stack, "create", "-f", str(not_a_pod)), 2)


def test_the_api_on_a_unix_socket(stack: Stack) -> None:
    """A loopback-only API without token validation, as scripts/run starts it, on a socket."""
    host, port = stack.sidecar.proc.base.rsplit(":", 1)
    sock = stack.tmp / "api.sock"
    api = start_api(stack.tmp, {"InterlinkAddress": f"unix://{sock}", "SidecarURL": host,
                                "SidecarPort": int(port)}, name="api-unix")
    try:
        config = write_config(stack.tmp / "unix.yaml", {"InterlinkAddress": f"unix://{sock}"})
        out = ok(cli(stack, "--config", str(config), "ping", config=False))
        assert f"API unix://{sock}: ok" in out
    finally:
        api.stop()


def test_an_unreachable_api_is_named(stack: Stack) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    err = failed(cli(stack, "--url", url, "ping", config=False), 3)
    assert f"cannot reach the interLink API at {url}" in err and "interlink-api" in err
    assert stack.token not in err


def test_a_refused_token_is_reported_not_leaked(stack: Stack) -> None:
    bad = stack.tmp / "bad-token"
    bad.write_text("not-a-valid-token-but-long-enough\n")
    result = cli(stack, "--token-file", str(bad), "ping")
    err = failed(result, 1)
    assert "/pinglink: refused with HTTP 401" in err
    assert "not-a-valid-token" not in result.stdout + err
    assert stack.token not in result.stdout + err


def verdicts(out: str) -> dict[str, str]:
    """doctor's lines as {part: "OK ..." or "FAIL ..."}."""
    found = {}
    for line in out.splitlines():
        verdict, part, *rest = line.split(None, 2)
        found[part] = f"{verdict} {rest[0] if rest else ''}".strip()
    return found


def test_doctor_on_a_healthy_node(stack: Stack) -> None:
    v = verdicts(ok(cli(stack, "doctor")))
    assert list(v) == ["config", "docker", "sidecar", "gpus", "api", "token"]
    assert all(x.startswith("OK") for x in v.values()), v
    assert "2 GPUs through NVML" in v["gpus"] and str(stack.tmp / "vk-token") in v["token"]


def test_health_checks_each_service_where_the_config_says(stack: Stack) -> None:
    assert ok(cli(stack, "health", "api")).startswith("API server at http://127.0.0.1:")
    assert "healthy" in ok(cli(stack, "health", "sidecar"))
    # The sidecar gone from where the config says: both unhealthy, exit 1, in words.
    moved = stack.tmp / "health-moved.yaml"
    port = stack.sidecar.proc.base.rsplit(":", 1)[1]
    moved.write_text(stack.config.read_text().replace(f"SidecarPort: {port}",
                                                      f"SidecarPort: {free_port()}"))
    result = cli(stack, "--config", str(moved), "health", "sidecar", config=False)
    assert result.returncode == 1 and "cannot reach the sidecar" in result.stdout, result


def test_doctor_names_each_broken_part(stack: Stack) -> None:
    # No config there.
    result = cli(stack, "--config", str(stack.tmp / "nope.yaml"), "doctor", config=False)
    assert result.returncode == 1 and verdicts(result.stdout)["config"].startswith("FAIL")

    # Docker unreachable: what needs it is not checked; the API side still is.
    result = cli(stack, "doctor", env={"DOCKER_HOST": f"unix://{stack.tmp}/no-docker.sock"})
    v = verdicts(result.stdout)
    assert result.returncode == 1
    assert v["docker"].startswith("FAIL") and "no-docker.sock" in v["docker"]
    assert v["sidecar"] == "FAIL not checked: docker failed"
    assert v["api"].startswith("OK") and v["token"].startswith("OK")

    # The sidecar where the config says is not there.
    moved = stack.tmp / "moved.yaml"
    moved.write_text(stack.config.read_text().replace(
        stack.sidecar.proc.base.rsplit(":", 1)[1], str(free_port())))
    v = verdicts(cli(stack, "--config", str(moved), "doctor", config=False).stdout)
    assert v["sidecar"].startswith("FAIL cannot reach the sidecar")
    assert v["gpus"] == "FAIL not checked: sidecar failed"

    # The API is not there.
    url = f"http://127.0.0.1:{free_port()}"
    v = verdicts(cli(stack, "--url", url, "doctor").stdout)
    assert v["api"].startswith(f"FAIL interlink-api does not answer at {url}")
    assert v["token"] == "FAIL not checked: api failed"

    # The token is refused, and not shown.
    bad = stack.tmp / "bad-token"
    bad.write_text("not-a-valid-token-but-long-enough\n")
    result = cli(stack, "--token-file", str(bad), "doctor")
    v = verdicts(result.stdout)
    assert v["token"].startswith(f"FAIL the API refused the token in {bad}")
    assert "not-a-valid-token" not in result.stdout + result.stderr


def test_doctor_against_an_https_api_with_a_private_ca(stack: Stack) -> None:
    # As docs/INSTALL.md sets a node up: HTTPS with a self-signed certificate, which the CLI
    # only trusts when given it (--api-ca-file); the token check goes over the same TLS.
    from oidc_issuer import _self_signed_cert

    folder = stack.tmp / "tls"
    folder.mkdir()
    cert, key = _self_signed_cert(str(folder), "127.0.0.1")
    issuer = start_issuer()
    host, port = stack.sidecar.proc.base.rsplit(":", 1)
    api = start_api(stack.tmp, {
        "InterlinkAddress": "https://127.0.0.1", "InterlinkPort": free_port(),
        "SidecarURL": host, "SidecarPort": int(port),
        "TLS": {"Enabled": True, "CertFile": cert, "KeyFile": key},
        "OIDC": {"Issuer": issuer.url, "Audience": "users", "GroupsClaim": "wlcg.groups",
                 "RequiredGroup": "/interlink"}}, name="https-api", wait=False)
    try:
        token = stack.tmp / "https-token"
        token.write_text(issuer.token(GROUPS) + "\n")
        args = ("--url", api.base, "--token-file", str(token))
        deadline = time.monotonic() + 20
        while "FAIL interlink-api does not answer" in (
                v := verdicts(cli(stack, *args, "--api-ca-file", cert, "doctor").stdout))["api"]:
            assert time.monotonic() < deadline, v
            time.sleep(0.3)
        assert all(x.startswith("OK") for x in v.values()), v
        assert v["token"].startswith(f"OK the API accepts the token in {token}")
        v = verdicts(cli(stack, *args, "doctor").stdout)
        assert v["api"].startswith("FAIL") and "CERTIFICATE_VERIFY_FAILED" in v["api"], v
        result = cli(stack, *args, "--api-ca-file", str(stack.tmp / "none.pem"), "doctor")
        assert failed(result, 2).startswith("interlink: --api-ca-file: cannot load")
        ok(cli(stack, *args, "--api-ca-file", cert, "ping"))
        # On the node itself, from the server's own config: its TLS.CertFile is trusted on
        # loopback, no flag needed; another certificate there is refused.
        node = write_config(stack.tmp / "https-node.yaml", {
            "InterlinkAddress": "https://0.0.0.0",
            "InterlinkPort": int(api.base.rsplit(":", 1)[1]),
            "TLS": {"Enabled": True, "CertFile": cert, "KeyFile": key},
            "SidecarURL": host, "SidecarPort": int(port), "VKTokenFile": str(token)})
        v = verdicts(cli(stack, "--config", str(node), "doctor", config=False).stdout)
        assert all(x.startswith("OK") for x in v.values()), v
        assert "https://127.0.0.1:" in v["api"], v
        (stack.tmp / "other").mkdir()
        other, _ = _self_signed_cert(str(stack.tmp / "other"), "127.0.0.1")
        impostor = write_config(stack.tmp / "https-other.yaml", {
            **yaml.safe_load(node.read_text()), "TLS": {"Enabled": True, "CertFile": other,
                                                         "KeyFile": key}})
        v = verdicts(cli(stack, "--config", str(impostor), "doctor", config=False).stdout)
        assert "CERTIFICATE_VERIFY_FAILED" in v["api"], v
    finally:
        api.stop()
        issuer.stop()


EXAMPLES = ROOT / "examples"


def test_the_readmes_examples(stack: Stack) -> None:
    """examples/ as the README uses them (images swapped for the local ones: no registry)."""
    hello = stack.tmp / "hello.yaml"
    hello.write_text((EXAMPLES / "hello-pod.yaml").read_text().replace("busybox:1.36", BUSYBOX))
    ok(cli(stack, "create", "-f", str(hello)))
    wait_for(stack, "hello", r"\bRunning\b")
    deadline = time.monotonic() + 30
    while "hello from a pod on the GPU node\non hello\n" not in ok(cli(stack, "logs", "hello")):
        assert time.monotonic() < deadline
        time.sleep(0.3)
    ok(cli(stack, "delete", "hello"))

    notebook = stack.tmp / "notebook.yaml"
    notebook.write_text((EXAMPLES / "notebook-pod.yaml").read_text().replace(
        "quay.io/jupyter/base-notebook:latest", "interlink-test/singleuser:1"))
    ok(cli(stack, "create", "-f", str(notebook)))  # admitted at baseline, with its GPU
    assert "default/notebook" in ok(cli(stack, "gpus"))
    home = stack.sidecar.data_root / "claims" / "default" / "claim-notebook"
    assert home.stat().st_gid == 100
    ok(cli(stack, "delete", "notebook"))
    assert home.is_dir()  # the home outlives the pod
    assert "default/notebook" not in ok(cli(stack, "gpus"))


# --- a lost /create answer ------------------------------------------------------------------


@dataclass
class LossyAPI:
    """A real HTTP server standing in for the API: ``/create`` answers as ``answer`` says
    (``"drop"``: the pod is made, then the connection closes unanswered; a status code: that
    answer, the pod made only when ``makes`` is true); ``/status`` and ``/delete`` answer
    from the pods made."""

    answer: str | int = "drop"
    makes: bool = True
    pods: dict[str, dict] = field(default_factory=dict)
    creates: int = 0

    def serve(self) -> tuple[ThreadingHTTPServer, str]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def body(self) -> object:
                return json.loads(self.rfile.read(int(self.headers["Content-Length"])))

            def reply(self, code: int, data: object) -> None:
                out = json.dumps(data).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def do_POST(self) -> None:  # /create
                pod = self.body()["pod"]
                api.creates += 1
                if api.answer == "drop" or api.makes:
                    api.pods[pod["metadata"]["uid"]] = pod
                if api.answer == "drop":
                    self.close_connection = True  # read, acted on, never answered
                    return
                self.reply(int(api.answer), "plugin answered: no" if api.answer != 200 else
                           {"PodUID": pod["metadata"]["uid"], "PodJID": "j"})

            def do_GET(self) -> None:  # /status
                self.reply(200, [{"name": p["metadata"]["name"], "UID": uid,
                                  "namespace": p["metadata"]["namespace"], "containers": [
                                      {"name": "main", "ready": True,
                                       "state": {"running": {}}}]}
                                 for uid, p in api.pods.items()
                                 if uid in {q["metadata"]["uid"] for q in self.body()}])

            def do_DELETE(self) -> None:  # /delete
                api.pods.pop(self.body()["metadata"]["uid"], None)
                self.reply(200, "deleted")

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture
def lossy(tmp_path: Path) -> Iterator[tuple[LossyAPI, str]]:
    api = LossyAPI()
    server, url = api.serve()
    yield api, url
    server.shutdown()
    server.server_close()


LOST_POD = f"kind: Pod\nmetadata: {{name: lost}}\nspec: {{containers: [{{name: main, image: " \
    f"{BUSYBOX}}}]}}\n"


def cli_at(url: str, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI with --url only (no config), its state file in ``tmp``."""
    return subprocess.run([sys.executable, "-m", "interlink_cli", "--url", url, *args],
                          capture_output=True, text=True, timeout=60,
                          env=env_for_children(INTERLINK_CLI_STATE=str(tmp / "pods.json")))


def remembered(tmp: Path) -> dict:
    path = tmp / "pods.json"
    return json.loads(path.read_text()) if path.exists() else {}


def test_a_lost_create_answer_keeps_the_pod_findable(lossy: tuple[LossyAPI, str],
                                                     tmp_path: Path) -> None:
    api, url = lossy
    pod_file = tmp_path / "pod.yaml"
    pod_file.write_text(LOST_POD)
    err = failed(cli_at(url, tmp_path, "create", "-f", str(pod_file)), 3)
    [uid] = api.pods
    assert f"cannot reach the interLink API at {url}" in err
    assert f"the API may have created pod default/lost (uid {uid})" in err
    assert "`interlink status default/lost`" in err and "`interlink delete default/lost`" in err
    entry = remembered(tmp_path)["default/lost"]
    assert entry["uid"] == uid and entry["pending"] is True

    again = failed(cli_at(url, tmp_path, "create", "-f", str(pod_file)), 1)
    assert "already exists" in again and "never answered" in again and api.creates == 1

    row = ok(cli_at(url, tmp_path, "status", "lost")).splitlines()[1]
    assert row.split()[:4] == ["default", "lost", "Running", "1/1"]
    assert "pending" not in remembered(tmp_path)["default/lost"]  # the node has it

    assert ok(cli_at(url, tmp_path, "delete", "lost")) == f"pod default/lost deleted (uid {uid})\n"
    assert remembered(tmp_path) == {} and api.pods == {}


def test_an_unanswered_create_the_node_never_made(lossy: tuple[LossyAPI, str],
                                                   tmp_path: Path) -> None:
    api, url = lossy
    api.answer, api.makes = 500, False  # as the API answers when its plugin call timed out
    pod_file = tmp_path / "pod.yaml"
    pod_file.write_text(LOST_POD)
    err = failed(cli_at(url, tmp_path, "create", "-f", str(pod_file)), 1)
    assert "/create: refused with HTTP 500" in err and "the API may have created" in err
    assert remembered(tmp_path)["default/lost"]["pending"] is True

    shown = cli_at(url, tmp_path, "status")
    assert ok(shown).splitlines()[1].split()[:3] == ["default", "lost", "NotCreated"]
    assert "pod default/lost" in shown.stderr and "was never created" in shown.stderr
    assert "`interlink delete default/lost` forgets it" in shown.stderr
    assert remembered(tmp_path)["default/lost"]["pending"] is True  # forgotten only when asked

    ok(cli_at(url, tmp_path, "delete", "default/lost"))
    assert remembered(tmp_path) == {}
    api.answer = 200
    assert "created" in ok(cli_at(url, tmp_path, "create", "-f", str(pod_file)))
    assert "pending" not in remembered(tmp_path)["default/lost"]


def test_a_refused_or_unsent_create_is_forgotten(lossy: tuple[LossyAPI, str],
                                                  tmp_path: Path) -> None:
    api, url = lossy
    api.answer, api.makes = 422, False
    pod_file = tmp_path / "pod.yaml"
    pod_file.write_text(LOST_POD)
    err = failed(cli_at(url, tmp_path, "create", "-f", str(pod_file)), 1)
    assert "refused with HTTP 422" in err and "may have created" not in err
    assert remembered(tmp_path) == {}

    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens: nothing was sent
    err = failed(cli_at(closed, tmp_path, "create", "-f", str(pod_file)), 3)
    assert f"cannot reach the interLink API at {closed}" in err
    assert "may have created" not in err and remembered(tmp_path) == {}
