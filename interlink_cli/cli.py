"""``interlink``: ping the node, create pods from files, read their status and logs, delete them,
see who holds the GPUs, check the node's set-up (doctor), and keep the VK's token file fresh.

Exit codes: 0 done; 1 what was asked about is not there, or the server refused (its message is
printed); 2 a usage or configuration error; 3 the API server (or sidecar) cannot be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from interlink_common.api_client import APIError, APIUnreachable
from interlink_common.config import resolve_path
from interlink_common.program import package_version

from . import commands
from .doctor import doctor
from .endpoints import api_url, api_verify, read_config, sidecar, vk_token_file
from .errors import UNREACHABLE, USAGE, CLIFailure
from .pods_file import DEFAULT_NAMESPACE
from .state import PodState
from .token_refresh import GRANTS, TokenError, TokenRefresher, TokenSettings

PROG = "interlink"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="path of InterLinkConfig.yaml (default: "
                        "$INTERLINKCONFIGPATH or /etc/interlink/InterLinkConfig.yaml)")
    parser.add_argument("--url", help="the API server's URL (http(s)://host:port or "
                        "unix:///path), instead of the config's InterlinkAddress/InterlinkURL "
                        "and InterlinkPort")
    parser.add_argument("--token-file", help="file holding the bearer token (default: the "
                        "config's VKTokenFile, if any)")
    parser.add_argument("--api-ca-file", metavar="FILE", help="CA bundle of the API server's "
                        "HTTPS certificate, when a private CA signed it (default: the CAs "
                        "Python trusts)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("ping", help="the node's status and resources")

    create = sub.add_parser("create", help="create a pod from a YAML or JSON file")
    create.add_argument("-f", "--filename", action="append", required=True, metavar="FILE",
                        help="a Pod, with any ConfigMaps and Secrets it uses (several "
                        "documents; kind: tells them apart)")
    create.add_argument("--configmap", action="append", default=[], metavar="FILE",
                        help="a file of ConfigMaps to send with the pod")
    create.add_argument("--secret", action="append", default=[], metavar="FILE",
                        help="a file of Secrets to send with the pod")

    def pod_command(name: str, help_text: str, optional: bool = False) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("-n", "--namespace", default=DEFAULT_NAMESPACE,
                       help="namespace of POD when given as a bare name (default: default)")
        p.add_argument("pod", nargs="?" if optional else None, metavar="POD",
                       help="NAME or NAMESPACE/NAME of a pod created with interlink create")
        return p

    pod_command("status", "a table of one pod's status, or every known pod's", optional=True)
    logs = pod_command("logs", "a container's log")
    logs.add_argument("container", nargs="?", metavar="CONTAINER",
                      help="default: the pod's first container")
    logs.add_argument("-f", "--follow", action="store_true", help="follow until Ctrl-C")
    logs.add_argument("--tail", type=int, metavar="N", help="only the last N lines")
    pod_command("delete", "delete a pod and forget it")
    sub.add_parser("gpus", help="the node's GPUs and the pods that hold them (from the sidecar)")

    sub.add_parser("doctor", help="check each part of the node's set-up: config, Docker, "
                   "sidecar, GPUs, API, token (one line each, OK or what to fix)")

    token = sub.add_parser("token", help="fetch the VK's bearer token from the issuer into its "
                           "token file, once or (--loop) before every expiry")
    token.add_argument("--issuer", help="the OIDC issuer (default: the config's OIDC.Issuer)")
    token.add_argument("--client-id", required=True, help="the OAuth2 client (the VK's)")
    token.add_argument("--client-secret-file", metavar="FILE",
                       help="file holding the client's secret (none: a public client)")
    token.add_argument("--grant", choices=GRANTS, default="client_credentials")
    token.add_argument("--refresh-token-file", metavar="FILE",
                       help="refresh_token grant: the refresh token, replaced by the rotated one")
    token.add_argument("--scope", default="", help="space-separated scopes to ask for")
    token.add_argument("--audience", default="", help="the audience to ask for (the API's "
                       "OIDC.Audience, when the issuer needs telling)")
    token.add_argument("--token-endpoint", default="", help="skip discovery: the issuer's "
                       "token endpoint")
    token.add_argument("--ca-file", help="CA bundle for an issuer with a private CA")
    token.add_argument("--out", metavar="FILE", help="the token file (default: the config's "
                       "VKTokenFile)")
    token.add_argument("--loop", action="store_true", help="keep refreshing until stopped")
    token.add_argument("--margin", type=float, default=60.0, metavar="SECONDS",
                       help="refresh this long before expiry (default 60)")
    token.add_argument("--mode", type=lambda v: int(v, 8), default=0o600, metavar="OCTAL",
                       help="the token file's mode (default 600; 640 lets the file's group, "
                       "e.g. a VK running as another user, read it)")
    return parser


def token_command(args: argparse.Namespace) -> int:
    """``interlink token``: the refresher, once or as a loop that SIGTERM ends."""
    cfg = read_config(args.config, required=args.config is not None
                      or not (args.issuer and args.out))
    issuer = args.issuer or (cfg.OIDC.Issuer if cfg is not None else "")
    out = args.out or vk_token_file(cfg)
    if not issuer:
        raise CLIFailure("no issuer: give --issuer or set OIDC.Issuer in the config", USAGE)
    if not out:
        raise CLIFailure("no token file: give --out or set VKTokenFile in the config", USAGE)
    settings = TokenSettings(
        issuer=issuer, client_id=args.client_id, out=Path(out), grant=args.grant,
        client_secret_file=Path(args.client_secret_file) if args.client_secret_file else None,
        refresh_token_file=Path(args.refresh_token_file) if args.refresh_token_file else None,
        scope=args.scope, audience=args.audience, token_endpoint=args.token_endpoint,
        ca_file=args.ca_file, mode=args.mode)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(message)s")
    try:
        refresher = TokenRefresher(settings, margin=args.margin)
        if not args.loop:
            refresher.refresh()
            return 0
    except TokenError as exc:
        raise CLIFailure(str(exc)) from None
    # The loop runs on a thread; the main thread only waits for SIGTERM or SIGINT (blocked
    # first, so the thread inherits the mask), then stops it: no work in a signal handler.
    stopping = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stopping)
    stop = threading.Event()
    worker = threading.Thread(target=refresher.run, args=(stop,), name="token-refresh")
    worker.start()
    signal.sigwait(stopping)
    stop.set()
    worker.join(60)
    return 0


def context(args: argparse.Namespace) -> commands.Context:
    # The config is needed for where to call, unless --url says it; the sidecar is only in it.
    required = args.config is not None or args.url is None or args.command == "gpus"
    cfg = read_config(args.config, required=required)
    if args.url:
        url = args.url
    else:
        assert cfg is not None, "read_config returns one when it is required"
        url = api_url(cfg)
    return commands.Context(
        url=url, token_file=args.token_file or vk_token_file(cfg), state=PodState(),
        verify=api_verify(args.api_ca_file),
        sidecar=sidecar(cfg) if cfg is not None and args.command == "gpus" else None)


def dispatch(ctx: commands.Context, args: argparse.Namespace) -> Coroutine[Any, Any, int]:
    match args.command:
        case "ping":
            return commands.ping(ctx)
        case "create":
            return commands.create(ctx, args.filename, args.configmap, args.secret)
        case "status":
            return commands.status(ctx, args.pod, args.namespace)
        case "logs":
            return commands.logs(ctx, args.pod, args.container, args.namespace, args.follow,
                                 args.tail)
        case "delete":
            return commands.delete(ctx, args.pod, args.namespace)
        case "gpus":
            return commands.gpus(ctx)
    raise AssertionError(f"unhandled command {args.command}")


def describe_api_error(exc: APIError, ctx: commands.Context, config: str | None) -> CLIFailure:
    """The words an operator needs: where, the status, the server's own message, what to do."""
    if isinstance(exc, APIUnreachable):
        where = "--url" if config is None else f"InterlinkAddress/InterlinkURL and " \
            f"InterlinkPort in {config}, or --url"
        return CLIFailure(f"cannot reach the interLink API at {ctx.url}: {exc.message}\n"
                          f"check that interlink-api runs and listens there ({where})",
                          UNREACHABLE)
    if exc.status == 0:  # the client could not read the token file: a local problem
        return CLIFailure(exc.message, USAGE)
    hint = ""
    if exc.status == 401:
        hint = ("\ngive a valid token with --token-file (or VKTokenFile in the config)"
                if ctx.token_file else "\nthe API wants a bearer token: --token-file FILE")
    return CLIFailure(f"{exc.route}: refused with HTTP {exc.status}: {exc.message}{hint}")


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    ctx: commands.Context | None = None
    try:
        if args.command == "token":
            sys.exit(token_command(args))
        if args.command == "doctor":
            sys.exit(asyncio.run(doctor(args.config, args.url, args.token_file,
                                            api_verify(args.api_ca_file))))
        ctx = context(args)
        code = asyncio.run(dispatch(ctx, args))
    except CLIFailure as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        code = exc.code
    except APIError as exc:
        assert ctx is not None
        shown = None if args.url and args.config is None else str(resolve_path(args.config))
        failure = describe_api_error(exc, ctx, shown)
        print(f"{PROG}: {failure}", file=sys.stderr)
        code = failure.code
    except ValidationError as exc:  # the pod file's shape, caught before anything is sent
        first = exc.errors()[0] if exc.errors() else None
        where = ".".join(str(p) for p in first["loc"]) if first else "?"
        print(f"{PROG}: the pod or its objects do not fit the API: {where}: "
              f"{first['msg'] if first else exc}", file=sys.stderr)
        code = USAGE
    except KeyboardInterrupt:
        # Ctrl-C ends a follow: what the operator asked for, not a failure.
        code = 0 if getattr(args, "follow", False) else 130
    sys.exit(code)


if __name__ == "__main__":
    main()
