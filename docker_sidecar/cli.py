"""``docker-sidecar``: runs offloaded pods as Docker containers."""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import sys
from pathlib import Path
from urllib.parse import urlsplit

from interlink_common.config import ConfigError, InterLinkConfig
from interlink_common.door import Door
from interlink_common.listen import Listener, parse_listener
from interlink_common.plugin_auth import TokenFile, TokenFileError
from interlink_common.program import config_errors_exit, start
from interlink_common.serve import serve

from .policy import SidecarPolicy

log = logging.getLogger("interlink.sidecar")


def sidecar_listener(cfg: InterLinkConfig) -> Listener:
    """``Socket`` when set, else ``SidecarPort`` on the host that ``SidecarURL`` names.

    The sidecar binds the address the API server dials rather than every interface: loopback
    in the default set-up. Whether it may listen there at all is ``door_problem``'s call.
    """
    if cfg.Socket:
        return parse_listener(cfg.Socket, None, cfg.TLS.model_copy(update={"Enabled": False}),
                              key="Socket")
    if cfg.SidecarURL.startswith("unix://"):
        return parse_listener(cfg.SidecarURL, None, cfg.TLS.model_copy(update={"Enabled": False}),
                              key="SidecarURL")
    url = urlsplit(cfg.SidecarURL if "://" in cfg.SidecarURL else f"http://{cfg.SidecarURL}")
    host = url.hostname or "127.0.0.1"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost":
            log.warning("SidecarURL names host %r: listening on every interface", host)
            host = "0.0.0.0"
    plain = parse_listener(f"http://{host}", cfg.SidecarPort,
                           cfg.TLS.model_copy(update={"Enabled": False}), key="SidecarPort")
    if url.scheme != "https":
        return plain
    tls = cfg.PluginTLS
    if not (tls.CertFile and tls.KeyFile):
        raise ConfigError("SidecarURL is https://: set PluginTLS.CertFile and PluginTLS.KeyFile "
                          "(the sidecar's certificate), and PluginTLS.ClientCACertFile (the CA "
                          "of the API server's client certificate)")
    return Listener(scheme="https", host=plain.host, port=plain.port, certfile=tls.CertFile,
                    keyfile=tls.KeyFile, client_ca=tls.ClientCACertFile)


def door_problem(cfg: InterLinkConfig, policy: SidecarPolicy, listener: Listener) -> str | None:
    """Why the sidecar must not listen on ``listener``, or None when it may.

    Whoever reaches the sidecar runs containers on this node. Loopback and a 0600 unix socket
    keep it to this host's API server; any other address needs an explicit opt-in and a
    credential the API server presents on every call: the shared token, mutual TLS, or both.
    """
    if listener.is_local:
        return None
    client_certs = listener.scheme == "https" and bool(listener.client_ca)
    if not (policy.AllowRemoteListen and (cfg.PluginTokenFile or client_certs)):
        return (f"refusing to listen on {listener.describe()}: anyone who can reach this address "
                "could run containers on this node. Listen on loopback (SidecarURL: "
                "http://127.0.0.1) or a unix socket (Socket: unix:///run/interlink/sidecar.sock), "
                "or set both Sidecar.AllowRemoteListen: true and a credential: PluginTokenFile "
                "(a file with a token the API server sends on every call) and/or mutual TLS "
                "(SidecarURL: https://, PluginTLS.CertFile, KeyFile and ClientCACertFile)")
    return None


def host_path_problem(prefixes: list[str], protected: list[Path]) -> str | None:
    """Sidecar.HostPathPrefixes must not reach what the sidecar itself guards: its data root
    (every pod's secrets and claims), Docker's own directories and its socket (root on the
    node)."""
    guarded = [Path(os.path.realpath(p)) for p in protected]
    for prefix in prefixes:
        real = Path(os.path.realpath(prefix))
        for g in guarded:
            if real == g or real in g.parents or g in real.parents:
                return (f"Sidecar.HostPathPrefixes entry {prefix!r} overlaps {g}, which pods must "
                        "never mount; allow a directory of its own, e.g. /data")
    return None


def publish_address_problem(address: str) -> str | None:
    """Sidecar.PublishAddress must be one of this node's addresses: Docker cannot bind any
    other, and every /create would fail on it."""
    if not address:
        return None
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        try:
            s.bind((address, 0))
        except OSError as exc:
            return (f"Sidecar.PublishAddress {address!r} cannot be bound on this node "
                    f"({exc.strerror or exc}); give one of this node's addresses, or leave it "
                    "empty for all of them")
    return None


def main(argv: list[str] | None = None) -> None:
    cfg = start("docker-sidecar", __doc__, argv, extra_sections={"Sidecar": SidecarPolicy})
    policy: SidecarPolicy = cfg.Sidecar  # type: ignore[attr-defined]
    with config_errors_exit("docker-sidecar"):
        listener = sidecar_listener(cfg)
    problem = door_problem(cfg, policy, listener)
    if problem:
        sys.exit(f"docker-sidecar: {problem}")
    try:
        token = TokenFile(cfg.PluginTokenFile) if cfg.PluginTokenFile else None
    except TokenFileError as exc:
        sys.exit(f"docker-sidecar: {exc}")
    if token is None:
        log.info("no PluginTokenFile: calls are not authenticated (listening on %s only; "
                 "bodies must be JSON and Host this server's name)", listener.describe())

    from docker.errors import DockerException

    from .app import Sidecar, create_app, node_resources
    from .engine import Engine
    from .gpus import GPUError, discover
    from .host_fs import prepare_data_root
    from .metrics import SidecarMetrics
    from .pods import PodManager
    from .tracker import Tracker

    metrics = SidecarMetrics()
    try:
        engine = Engine.from_env(policy.Instance, observe=metrics.observe_docker)
        resources, node = node_resources(engine, policy)
    except DockerException as exc:
        sys.exit(f"docker-sidecar: cannot reach the Docker Engine ({exc}); start dockerd or "
                 "set DOCKER_HOST")
    try:
        inventory = discover(policy.GPU)
    except GPUError as exc:
        sys.exit(f"docker-sidecar: {exc}")
    data_root = cfg.data_root.resolve()
    protected = [data_root, Path(engine.info().get("DockerRootDir") or "/var/lib/docker")]
    docker_host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    if docker_host.startswith("unix://"):
        protected.append(Path(docker_host[len("unix://"):]).parent)
    problem = host_path_problem(policy.HostPathPrefixes, protected) or \
        publish_address_problem(policy.PublishAddress)
    if problem:
        sys.exit(f"docker-sidecar: {problem}")
    prepare_data_root(data_root)
    manager = PodManager(engine, Tracker(engine), policy, data_root=data_root, node=node,
                         gpus=inventory)
    log.info("data root %s; node %s with %s CPUs and %s memory", data_root, node.name,
             resources.cpu, resources.memory)
    # A browser page can reach loopback TCP, but not a unix socket, and it can present
    # neither the bearer token nor the API server's client certificate.
    credential = token is not None or bool(listener.client_ca)
    door = None if credential or listener.scheme == "unix" else Door.for_listener(
        listener, cfg, "set PluginTokenFile in both programs' config (the API server then "
        "sends it), or serve on a unix socket (Socket: unix:///run/interlink/sidecar.sock)")
    serve(create_app(Sidecar(manager, engine, metrics, resources), token, door), listener,
          name="docker-sidecar", socket_group=cfg.SocketGroup)


if __name__ == "__main__":
    main()
