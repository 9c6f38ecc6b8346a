"""``interlink-api``: the API server's command line."""

from __future__ import annotations

import logging
import sys

from interlink_common.config import InterLinkConfig
from interlink_common.listen import Listener, api_listener
from interlink_common.program import config_errors_exit, start
from interlink_common.serve import serve

log = logging.getLogger("interlink.api")


def auth_problem(cfg: InterLinkConfig, listener: Listener) -> str | None:
    """Why the server must not start without token validation, or None when it may."""
    if cfg.OIDC.enabled or listener.is_local or cfg.AllowInsecureNoAuth:
        return None
    return (f"refusing to listen on {listener.describe()} without authentication: anyone who "
            "can reach this address could run pods on this node. Set OIDC.Issuer (and "
            "OIDC.Audience) in the config, listen on loopback or a unix socket, or set "
            "AllowInsecureNoAuth: true if a proxy in front already checks tokens")


def main(argv: list[str] | None = None) -> None:
    cfg = start("interlink-api", __doc__, argv)
    with config_errors_exit("interlink-api"):
        listener = api_listener(cfg.InterlinkAddress, cfg.InterlinkURL, cfg.InterlinkPort, cfg.TLS)
    problem = auth_problem(cfg, listener)
    if problem:
        sys.exit(f"interlink-api: {problem}")

    from .app import create_app
    from .auth import OIDCValidator

    validator = OIDCValidator(cfg.OIDC) if cfg.OIDC.enabled else None
    if validator is None:
        log.warning("token validation is off (no OIDC.Issuer configured)")
    log.info("forwarding to plugin at %s", cfg.sidecar_base)
    serve(create_app(cfg, validator), listener, name="interlink-api")


if __name__ == "__main__":
    main()
