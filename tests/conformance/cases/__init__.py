"""Upstream's templates, each re-expressed as one module here, and the ones left out.

Every module defines ``TEMPLATE`` (the upstream file name) and ``build(suffix) -> Case``;
``suffix`` plays the role of upstream's ``{{ uuid }}`` in object names. Where our version differs
from upstream's, the module docstring says so under "Our version".
"""

from __future__ import annotations

import importlib
from types import ModuleType

# Every template in upstream's vktestset/templates/ (interlink-hq/vk-test-set, main as of
# 2026): the conformance test asserts that each is either implemented or excluded below.
UPSTREAM_TEMPLATES: tuple[str, ...] = (
    "000-hello-world.yaml",
    "010-simple-python.yaml",
    "020-python-env.yaml",
    "030-simple-shared-volume.yaml",
    "040-config-volumes.yaml",
    "050-limits.yaml",
    "060-init-container.yaml",
    "065-multi-init-containers.yaml",
    "070-rclone-bind.yaml",
    "080-configmap-secret-env.yaml",
    "085-secret-envfrom.yaml",
    "086-secretkeyref-env.yaml",
    "090-probes.yaml",
    "095-default-entrypoint.yaml",
    "100-failing-containers.yaml",
    "105-env-quotes.yaml",
    "110-failed-jobs.yaml",
    "115-lifecycle-hooks.yaml",
    "120-projected-volumes.yaml",
)

# Templates that cannot run on a machine without network egress or FUSE, and why.
EXCLUDED: dict[str, str] = {
    "060-init-container.yaml":
        "network egress: the init container runs `git clone https://github.com/interTwin-eu/"
        "interLink` (and pulls bitnamilegacy/git); cloning a remote repository is the point of "
        "the test, so there is no offline equivalent that checks the same thing",
    "070-rclone-bind.yaml":
        "FUSE: `rclone mount` over SFTP needs /dev/fuse, privileged containers (refused unless "
        "Sidecar.AllowPrivileged) and Bidirectional mount propagation between containers; its "
        "image landerlini/vktestset-rclone-bind is also built with rclone.org's install script "
        "(network egress)",
}

_MODULES: dict[str, str] = {
    "000-hello-world.yaml": "t000_hello_world",
    "010-simple-python.yaml": "t010_simple_python",
    "020-python-env.yaml": "t020_python_env",
    "030-simple-shared-volume.yaml": "t030_simple_shared_volume",
    "040-config-volumes.yaml": "t040_config_volumes",
    "050-limits.yaml": "t050_limits",
    "065-multi-init-containers.yaml": "t065_multi_init_containers",
    "080-configmap-secret-env.yaml": "t080_configmap_secret_env",
    "085-secret-envfrom.yaml": "t085_secret_envfrom",
    "086-secretkeyref-env.yaml": "t086_secretkeyref_env",
    "090-probes.yaml": "t090_probes",
    "095-default-entrypoint.yaml": "t095_default_entrypoint",
    "100-failing-containers.yaml": "t100_failing_containers",
    "105-env-quotes.yaml": "t105_env_quotes",
    "110-failed-jobs.yaml": "t110_failed_jobs",
    "115-lifecycle-hooks.yaml": "t115_lifecycle_hooks",
    "120-projected-volumes.yaml": "t120_projected_volumes",
}

IMPLEMENTED: tuple[str, ...] = tuple(_MODULES)


def module(template: str) -> ModuleType:
    mod = importlib.import_module(f"{__name__}.{_MODULES[template]}")
    assert mod.TEMPLATE == template, (mod.__name__, mod.TEMPLATE)
    return mod
