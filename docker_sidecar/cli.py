"""``docker-sidecar``: runs offloaded pods as Docker containers."""

from __future__ import annotations

import ipaddress
import logging
import sys
from urllib.parse import urlsplit

from interlink_common.config import InterLinkConfig
from interlink_common.listen import Listener, parse_listener
from interlink_common.program import config_errors_exit, start
from interlink_common.serve import serve

from .policy import SidecarPolicy

log = logging.getLogger("interlink.sidecar")


def sidecar_listener(cfg: InterLinkConfig) -> Listener:
    """``Socket`` when set, else ``SidecarPort`` on the host that ``SidecarURL`` names.

    The sidecar has no authentication of its own, so it binds the address the API server dials
    rather than every interface: loopback in the default set-up.
    """
    if cfg.Socket:
        return parse_listener(cfg.Socket, None, cfg.TLS.model_copy(update={"Enabled": False}),
                              key="Socket")
    if cfg.SidecarURL.startswith("unix://"):
        return parse_listener(cfg.SidecarURL, None, cfg.TLS.model_copy(update={"Enabled": False}),
                              key="SidecarURL")
    host = urlsplit(cfg.SidecarURL if "://" in cfg.SidecarURL else f"http://{cfg.SidecarURL}"
                    ).hostname or "127.0.0.1"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost":
            log.warning("SidecarURL names host %r: listening on every interface; the sidecar "
                        "has no authentication, so keep its port off untrusted networks", host)
            host = "0.0.0.0"
    return parse_listener(f"http://{host}", cfg.SidecarPort,
                          cfg.TLS.model_copy(update={"Enabled": False}), key="SidecarPort")


def main(argv: list[str] | None = None) -> None:
    cfg = start("docker-sidecar", __doc__, argv, extra_sections={"Sidecar": SidecarPolicy})
    with config_errors_exit("docker-sidecar"):
        listener = sidecar_listener(cfg)

    from docker.errors import DockerException

    from .app import Sidecar, create_app, node_resources
    from .engine import Engine
    from .gpus import GPUError, discover
    from .host_fs import prepare_data_root
    from .metrics import SidecarMetrics
    from .pods import PodManager
    from .tracker import Tracker

    policy: SidecarPolicy = cfg.Sidecar  # type: ignore[attr-defined]
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
    prepare_data_root(data_root)
    manager = PodManager(engine, Tracker(engine), policy, data_root=data_root, node=node,
                         gpus=inventory)
    log.info("data root %s; node %s with %s CPUs and %s memory", data_root, node.name,
             resources.cpu, resources.memory)
    serve(create_app(Sidecar(manager, engine, metrics, resources)), listener,
          name="docker-sidecar")


if __name__ == "__main__":
    main()
