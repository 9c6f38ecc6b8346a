"""What both programs do before serving: arguments, config, logging."""

from __future__ import annotations

import argparse
import importlib.metadata
import resource
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from pydantic import BaseModel

from .config import ConfigError, InterLinkConfig, load_config
from .logconfig import setup_logging

DISTRIBUTION = "interlink-docker"


def package_version() -> str:
    """The installed distribution's version; "unknown" when run from a source tree that was
    never installed (PYTHONPATH), where there is no metadata to read."""
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


@contextmanager
def config_errors_exit(prog: str) -> Iterator[None]:
    """A configuration problem ends the program with the message, not a traceback."""
    try:
        yield
    except ConfigError as exc:
        sys.exit(f"{prog}: configuration error:\n{exc}")


def raise_open_files_limit(want: int = 65536) -> None:
    """Open log streams, plugin and Docker connections and usage walks each hold descriptors;
    a soft limit of 1024 (systemd's default) is too few for a full node. The hard limit
    stays."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def start(prog: str, description: str | None, argv: list[str] | None = None,
          extra_sections: dict[str, type[BaseModel]] | None = None) -> InterLinkConfig:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--config", help="path of InterLinkConfig.yaml "
                        "(default: $INTERLINKCONFIGPATH or /etc/interlink/InterLinkConfig.yaml)")
    parser.add_argument("--log-json", action="store_true", help="log JSON lines")
    parser.add_argument("--verbose", action="store_true", help="log debug lines")
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    args = parser.parse_args(argv)

    setup_logging()  # scrubbed from the first line on, config warnings included
    with config_errors_exit(prog):
        cfg = load_config(args.config, extra_sections=extra_sections)
    setup_logging(json_lines=args.log_json or cfg.LogFormat == "json",
                  verbose=args.verbose or cfg.VerboseLogging, errors_only=cfg.ErrorsOnlyLogging)
    raise_open_files_limit()
    return cfg
