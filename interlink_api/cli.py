"""``interlink-api``: the API server's command line."""

from __future__ import annotations

import argparse
import logging
import sys

from interlink_common.config import ConfigError, InterLinkConfig, load_config
from interlink_common.listen import Listener, api_listener
from interlink_common.logconfig import setup_logging
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
    parser = argparse.ArgumentParser(prog="interlink-api", description=__doc__)
    parser.add_argument("--config", help="path of InterLinkConfig.yaml "
                        "(default: $INTERLINKCONFIGPATH or /etc/interlink/InterLinkConfig.yaml)")
    parser.add_argument("--log-json", action="store_true", help="log JSON lines")
    parser.add_argument("--verbose", action="store_true", help="log debug lines")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    try:
        cfg = load_config(args.config)
        listener = api_listener(cfg.InterlinkAddress, cfg.InterlinkURL, cfg.InterlinkPort, cfg.TLS)
    except ConfigError as exc:
        sys.exit(f"interlink-api: configuration error:\n{exc}")
    setup_logging(json_lines=args.log_json or cfg.LogFormat == "json",
                  verbose=args.verbose or cfg.VerboseLogging, errors_only=cfg.ErrorsOnlyLogging)
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
