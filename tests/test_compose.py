"""The compose stack as an operator starts it: docker-compose.yml validated, the image built
from the Dockerfile on a local base (no registry), both services up and healthy, the API over
TLS with OIDC taking a GPU pod whose subPath mount the containerised sidecar pins on the host.

The NVIDIA parts are the test stand-ins: dockerd's "nvidia" driver is the stub hook
(scripts/ensure-docker), and the fake NVML library is mounted where the NVIDIA Container Toolkit
would put the host's.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from fake_gpus import dockerd_can_do_gpus, nvml_env
from kube import BUSYBOX
from oidc_issuer import start_issuer
from procs import ROOT, env_for_children, free_port, write_config
from test_api_auth_process import _cert

BASE_IMAGE = "interlink-test/python:3.11"  # stands in for python:3.11-slim
IMAGE = "interlink-test/interlink-docker:ci"
GPUS = [f"GPU-{uuid.UUID(int=i + 301)}" for i in range(2)]
GROUPS = {"wlcg.groups": ["/interlink"]}
CACHE = Path(os.environ.get("INTERLINK_TEST_IMAGE_CACHE", "/var/cache/interlink-test-images"))
# What the image's own user is (Dockerfile): the API's key file is given to its group.
IMAGE_UID = 10001


def compose_command() -> list[str]:
    """``docker compose`` (v2), else ``docker-compose``; Debian's docker-compose installed when
    neither is there and this is a root Debian shell, as the README's commands promise."""
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if not shutil.which("docker-compose"):
        if os.geteuid() != 0 or not shutil.which("apt-get"):
            pytest.fail("no docker compose: install the compose plugin or Debian's "
                        "docker-compose (apt-get install docker-compose)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        installed = subprocess.run(["apt-get", "install", "-y", "-qq", "docker-compose"],
                                   capture_output=True, text=True, env=env)
        if installed.returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
            subprocess.run(["apt-get", "install", "-y", "-qq", "docker-compose"], check=True,
                           capture_output=True, env=env)
    return ["docker-compose"]


def wheelhouse() -> Path:
    """The project's dependencies as wheels, fetched by this venv's pip (which reaches PyPI;
    containers here do not) and cached by pyproject.toml, so the image builds offline."""
    if sys.version_info[:2] != (3, 11):
        # The wheels are this Python's; the base image's is 3.11 (Debian bookworm's).
        pytest.fail(f"the image's wheels are fetched for this Python ({sys.version.split()[0]}"
                    "), which must be the base image's 3.11")
    pyproject = (ROOT / "pyproject.toml").read_bytes()
    key = hashlib.sha256(pyproject + sys.version.encode()).hexdigest()[:16]
    wheels = CACHE / f"wheelhouse-{key}"
    if (wheels / ".complete").exists():
        return wheels
    work = Path(f"{wheels}.{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", "--quiet", "--wheel-dir", str(work), str(ROOT)], check=True)
    for own in work.glob("interlink_docker-*.whl"):  # built from /src in the image instead
        own.unlink()
    build_requires = tomllib.loads(pyproject.decode())["build-system"]["requires"]
    subprocess.run([*pip, "download", "--quiet", "--only-binary=:all:", "--dest", str(work),
                    *build_requires, "wheel"], check=True)
    (work / ".complete").write_text("")
    shutil.rmtree(wheels, ignore_errors=True)
    work.rename(wheels)
    return wheels


def build_image(tmp: Path) -> str:
    """``docker build`` of the repository's Dockerfile with its .dockerignore, from the local
    base, pip offline from the wheelhouse put in the context."""
    context = tmp / "context"
    shutil.copytree(ROOT, context, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", "__pycache__", ".pytest_cache", "*.egg-info", "node_modules"))
    shutil.copytree(wheelhouse(), context / "wheelhouse")
    result = subprocess.run(
        ["docker", "build", "-t", IMAGE, "--build-arg", f"BASE_IMAGE={BASE_IMAGE}",
         "--build-arg", "PIP_INSTALL_OPTIONS=--no-index --find-links=/src/wheelhouse",
         str(context)], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return IMAGE


@dataclass
class Stack:
    compose: list[str]
    env: dict[str, str]
    tmp: Path
    api_url: str
    ca: Path
    config: Path
    token_file: Path
    instance: str

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([*self.compose, *args], capture_output=True, text=True,
                                env=self.env, timeout=300)
        assert not check or result.returncode == 0, result.stdout + result.stderr
        return result

    def container(self, service: str) -> str:
        return self.run("ps", "-q", service).stdout.strip()

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "interlink_cli", "--config", str(self.config),
             "--url", self.api_url, "--api-ca-file", str(self.ca), "--token-file",
             str(self.token_file), *args], capture_output=True, text=True, timeout=120,
            env=env_for_children(INTERLINK_CLI_STATE=str(self.tmp / "cli-state.json")))


def inspect(container: str) -> dict:
    out = subprocess.run(["docker", "inspect", container], check=True, capture_output=True,
                         text=True).stdout
    return json.loads(out)[0]


def health(container: str) -> str:
    return (inspect(container)["State"].get("Health") or {}).get("Status", "none")


def shared_mount(path: Path) -> None:
    """The data root on a shared mount, as on a systemd host (docs/DEPLOYMENT.md), so the
    sidecar's pinning mounts propagate out of its container."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "--bind", str(path), str(path)], check=True)
    subprocess.run(["mount", "--make-rshared", str(path)], check=True)


@pytest.fixture(scope="module")
def stack(docker_client, tmp_path_factory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("compose")
    dockerd_can_do_gpus(docker_client)
    compose = compose_command()
    image = build_image(tmp)

    data_root = tmp / "data"
    shared_mount(data_root)
    tls = tmp / "tls"
    tls.mkdir()
    _, _, crt, key = _cert(tls, "tls")
    os.chown(key, 0, IMAGE_UID)
    os.chmod(key, 0o640)
    os.chmod(tls, 0o755)
    nvml_vars, lib = nvml_env(tmp, GPUS)
    issuer = start_issuer()
    token_file = tmp / "vk-token"
    token_file.write_text(issuer.token(GROUPS) + "\n")
    api_port, sidecar_port = free_port(), free_port()
    instance = f"compose-{uuid.uuid4().hex[:8]}"
    # configs/compose.yaml with this run's ports, issuer, images and fake NVML.
    shipped = yaml.safe_load((ROOT / "configs" / "compose.yaml").read_text())
    shipped.update({"InterlinkPort": api_port, "SidecarPort": sidecar_port,
                    "DataRootFolder": str(data_root)})
    shipped["OIDC"].update({"Issuer": issuer.url, "GroupsClaim": "wlcg.groups"})
    shipped["Sidecar"].update({"InfraImage": "interlink-test/pause:1", "Instance": instance,
                               "GPU": {"Enabled": "on",
                                       "NVMLLibrary": f"/opt/nvml/{Path(lib).name}"}})
    config = write_config(tmp / "InterLinkConfig.yaml", shipped)
    os.chmod(config, 0o644)
    override = tmp / "compose.override.yml"
    override.write_text(yaml.safe_dump({"services": {"docker-sidecar": {
        "environment": {"FAKE_NVML_CONFIG": "/etc/fake-nvml/gpus.txt"},
        "volumes": [f"{Path(lib).parent}:/opt/nvml:ro",
                    f"{nvml_vars['FAKE_NVML_CONFIG']}:/etc/fake-nvml/gpus.txt:ro"]}}}))
    env = {**os.environ, "INTERLINK_IMAGE": image, "INTERLINK_CONFIG": str(config),
           "INTERLINK_DATA_ROOT": str(data_root), "INTERLINK_TLS_DIR": str(tls),
           "COMPOSE_PROJECT_NAME": instance}
    files = ["-f", str(ROOT / "docker-compose.yml"), "-f", str(override),
             "--project-directory", str(ROOT)]
    st = Stack([*compose, *files], env, tmp, f"https://127.0.0.1:{api_port}", Path(crt),
               config, token_file, instance)
    try:
        st.run("up", "-d", "--no-build")
        yield st
    finally:
        logs = st.run("logs", "--no-color", check=False)
        (tmp / "compose.log").write_text(logs.stdout + logs.stderr)
        st.run("down", "--timeout", "5", check=False)
        for c in docker_client.containers.list(
                all=True, filters={"label": f"io.interlink.managed={instance}"}):
            c.remove(force=True)
        issuer.stop()
        subprocess.run(["umount", "-l", str(data_root)], check=False)


def wait_healthy(stack: Stack, service: str, timeout: float = 180) -> str:
    cid = stack.container(service)
    deadline = time.monotonic() + timeout
    while (state := health(cid)) != "healthy":
        assert state != "unhealthy" and time.monotonic() < deadline, (
            service, state, inspect(cid)["State"].get("Health"),
            stack.run("logs", "--no-color", service, check=False).stdout[-3000:])
        time.sleep(1)
    return cid


def test_compose_file_validates_with_its_defaults() -> None:
    """What an operator runs first: the file as shipped, without this test's overrides."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTERLINK_")}
    result = subprocess.run([*compose_command(), "-f", str(ROOT / "docker-compose.yml"),
                             "config"], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    sidecar, api = services["docker-sidecar"], services["interlink-api"]
    devices = sidecar["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": "all", "capabilities": ["gpu", "utility"]}] \
        or devices[0]["capabilities"] == ["gpu", "utility"]
    assert api["user"] == "interlink" and sidecar["user"] == "root"
    for service in (sidecar, api):
        assert service["healthcheck"]["test"][:3] == ["CMD", "interlink", "health"]
    shipped = yaml.safe_load((ROOT / "configs" / "compose.yaml").read_text())
    assert shipped["InterlinkAddress"].startswith("https://") and shipped["TLS"]["Enabled"]


def test_image_runs_the_api_unprivileged_with_labels_and_a_healthcheck(stack: Stack) -> None:
    image = subprocess.run(["docker", "image", "inspect", IMAGE], check=True,
                           capture_output=True, text=True).stdout
    config = json.loads(image)[0]["Config"]
    assert config["User"] == "interlink"
    assert config["Healthcheck"]["Test"] == ["CMD", "interlink", "health"]
    labels = config["Labels"]
    assert labels["org.opencontainers.image.base.name"] == BASE_IMAGE
    assert labels["org.opencontainers.image.version"]
    # The .dockerignore keeps the tests, the venv and the git tree out of the image.
    listing = subprocess.run(["docker", "run", "--rm", "--entrypoint", "sh", IMAGE, "-c",
                              "ls /src 2>&1; ls /opt/interlink/bin; id -u"],
                             capture_output=True, text=True, check=True).stdout
    assert "No such file" in listing  # /src stayed in the build stage
    assert "interlink-api" in listing and "docker-sidecar" in listing
    assert listing.split()[-1] == str(IMAGE_UID)


def test_both_services_become_healthy_api_as_non_root(stack: Stack) -> None:
    sidecar = wait_healthy(stack, "docker-sidecar")
    api = wait_healthy(stack, "interlink-api")
    ids = {name: subprocess.run(["docker", "exec", cid, "sh", "-c", "id -u; cat /proc/1/status"],
                                capture_output=True, text=True, check=True).stdout
           for name, cid in (("api", api), ("sidecar", sidecar))}
    assert ids["api"].split()[0] == str(IMAGE_UID)
    assert "CapEff:\t0000000000000000" in ids["api"]
    assert ids["sidecar"].split()[0] == "0"
    log = stack.run("logs", "--no-color", "interlink-api").stdout
    assert "plain HTTP" not in log  # TLS on: no warning about tokens in clear


def test_the_api_speaks_tls_and_checks_tokens(stack: Stack) -> None:
    wait_healthy(stack, "interlink-api")
    ping = stack.cli("ping")
    assert ping.returncode == 0, ping.stdout + ping.stderr
    assert ": ok" in ping.stdout and "nvidia.com/gpu=2" in ping.stdout
    plain = subprocess.run([sys.executable, "-m", "interlink_cli", "--url",
                            stack.api_url.replace("https", "http"), "ping"],
                           capture_output=True, text=True, timeout=60)
    assert plain.returncode == 3, plain.stderr
    anonymous = subprocess.run([sys.executable, "-m", "interlink_cli", "--url", stack.api_url,
                                "--api-ca-file", str(stack.ca), "ping"],
                               capture_output=True, text=True, timeout=60)
    assert anonymous.returncode == 1 and "401" in anonymous.stderr, anonymous.stderr


def test_a_gpu_pod_through_the_containerised_pair(stack: Stack, docker_client) -> None:
    """NVML inside the sidecar's container lists the node's GPUs; a pod granted one gets it by
    UUID; its subPath mount, pinned by the sidecar inside its container, is what the pod sees."""
    wait_healthy(stack, "interlink-api")
    gpus = stack.cli("gpus")
    assert gpus.returncode == 0, gpus.stderr
    assert all(g in gpus.stdout for g in GPUS), gpus.stdout
    pod = stack.tmp / "gpu-pod.yaml"
    pod.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "compose-gpu"},
        "spec": {"terminationGracePeriodSeconds": 0, "restartPolicy": "Never",
                 "initContainers": [{"name": "seed", "image": BUSYBOX, "command": [
                     "sh", "-c", "mkdir -p /work/sub && echo pinned > /work/sub/note"],
                     "volumeMounts": [{"name": "work", "mountPath": "/work"}]}],
                 "containers": [{"name": "main", "image": BUSYBOX,
                                 "command": ["sh", "-c", "cat /data/note; exec sleep 3600"],
                                 "resources": {"limits": {"nvidia.com/gpu": "1"}},
                                 "volumeMounts": [{"name": "work", "mountPath": "/data",
                                                   "subPath": "sub"}]}],
                 "volumes": [{"name": "work", "emptyDir": {}}]}}))
    created = stack.cli("create", "-f", str(pod))
    assert created.returncode == 0, created.stdout + created.stderr
    try:
        deadline = time.monotonic() + 60
        while "Running" not in (status := stack.cli("status", "compose-gpu")).stdout:
            assert time.monotonic() < deadline, status.stdout + status.stderr
            time.sleep(0.5)
        main = docker_client.containers.list(filters={
            "label": [f"io.interlink.managed={stack.instance}",
                      "io.interlink.container.name=main"]})
        assert len(main) == 1
        attrs = main[0].attrs
        env = dict(e.split("=", 1) for e in attrs["Config"]["Env"])
        assert env["NVIDIA_VISIBLE_DEVICES"] in GPUS
        requests = attrs["HostConfig"]["DeviceRequests"]
        assert requests[0]["Driver"] == "nvidia"
        assert requests[0]["DeviceIDs"] == [env["NVIDIA_VISIBLE_DEVICES"]]
        deadline = time.monotonic() + 30
        while "pinned" not in (logs := stack.cli("logs", "compose-gpu", "main")).stdout:
            assert time.monotonic() < deadline, logs.stdout + logs.stderr
            time.sleep(0.5)
    finally:
        deleted = stack.cli("delete", "compose-gpu")
    assert deleted.returncode == 0, deleted.stderr
    assert not docker_client.containers.list(all=True, filters={
        "label": f"io.interlink.managed={stack.instance}"})
