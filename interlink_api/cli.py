"""``interlink-api``: the API server's command line."""

from __future__ import annotations

import logging
import ssl
import sys

from interlink_common.config import InterLinkConfig
from interlink_common.listen import Listener, api_listener, tokens_in_clear_warning
from interlink_common.program import config_errors_exit, start
from interlink_common.serve import serve

log = logging.getLogger("interlink.api")


def auth_problem(cfg: InterLinkConfig, listener: Listener) -> str | None:
    """Why the server must not start with this authentication set-up, or None when it may."""
    if cfg.OIDC.enabled and not any(a.strip() for a in cfg.OIDC.Audience):
        # Without an audience any token the issuer signs for any client would be accepted.
        return ("OIDC.Audience is empty: set it to the audience the VK's tokens carry (e.g. "
                "Audience: users), so that tokens the issuer made for other services are "
                "refused")
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
    in_clear = tokens_in_clear_warning(listener, checks_tokens=cfg.OIDC.enabled)
    if in_clear:
        # A warning, not a refusal: upstream's configs listen so, and some sites' networks
        # are private; doctor reports it as a failure to fix.
        log.warning("%s", in_clear)

    from interlink_common.plugin_auth import TokenFileError

    from .app import create_app
    from .auth import OIDCValidator

    validator = OIDCValidator(cfg.OIDC) if cfg.OIDC.enabled else None
    if validator is None:
        log.warning("token validation is off (no OIDC.Issuer configured)")
    log.info("forwarding to plugin at %s", cfg.sidecar_base)
    try:
        app = create_app(cfg, validator, listener)
    except TokenFileError as exc:
        sys.exit(f"interlink-api: {exc}")
    except (OSError, ssl.SSLError) as exc:
        sys.exit(f"interlink-api: PluginTLS: cannot load the client certificate or CA: {exc}")
    serve(app, listener, name="interlink-api", socket_group=cfg.SocketGroup)


if __name__ == "__main__":
    main()
