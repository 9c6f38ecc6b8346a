"""Public images named by upstream's templates, and the local images that stand in for them.

No registry is reachable from the test machines, so every image a template names is mapped to
one built by ``tests/images/build.sh`` from Debian packages, and its pull policy becomes
``IfNotPresent`` (``Always`` would make the engine try the registry). An image with no mapping
is an error, so a new template cannot silently pull.

What differs from the public images, and why it does not change what the templates check:

- ``python:alpine``, ``python:3.11-alpine`` -> ``interlink-test/python:3.11``: CPython 3.11 on
  Debian instead of Alpine. ``python``, ``python3``, ``/bin/sh`` (dash instead of busybox ash),
  coreutils ``date``/``seq``/``grep`` are there; ``apk`` is not (no template relies on it
  succeeding once its image is mapped, see the 065 case).
- ``busybox:*``, ``alpine:*`` -> ``interlink-test/busybox:1``: busybox applets, CMD ``sh``.
- ``nginx:alpine`` -> ``interlink-test/nginx:1``: Debian's nginx 1.22.
- ``ghcr.io/grycap/cowsay`` -> ``interlink-test/python:3.11``: the template only needs
  ``/bin/bash``, which the Debian image has.
"""

from __future__ import annotations

import fnmatch
from typing import Any

PYTHON = "interlink-test/python:3.11"
BUSYBOX = "interlink-test/busybox:1"
NGINX = "interlink-test/nginx:1"

# fnmatch patterns, first match wins.
IMAGE_MAP: list[tuple[str, str]] = [
    ("python:alpine", PYTHON),
    ("python:3.11-alpine", PYTHON),
    ("busybox", BUSYBOX),
    ("busybox:*", BUSYBOX),
    ("alpine", BUSYBOX),
    ("alpine:*", BUSYBOX),
    ("nginx:alpine", NGINX),
    ("ghcr.io/grycap/cowsay", PYTHON),
    ("ghcr.io/grycap/cowsay:*", PYTHON),
]


class UnmappedImage(LookupError):
    pass


def local_image(public: str) -> str:
    for pattern, local in IMAGE_MAP:
        if fnmatch.fnmatchcase(public, pattern):
            return local
    raise UnmappedImage(f"image {public!r} has no local stand-in; add one to IMAGE_MAP and "
                        "tests/images/build.sh (no registry is reachable here)")


def localize(container: dict[str, Any]) -> None:
    """Point a container at its local image; nothing to pull, so IfNotPresent."""
    container["image"] = local_image(container["image"])
    container["imagePullPolicy"] = "IfNotPresent"
