"""Loader for ``InterLinkConfig.yaml``: both upstream key generations plus this project's keys.

Path resolution: ``--config``, else ``$INTERLINKCONFIGPATH``, else
``/etc/interlink/InterLinkConfig.yaml``. Env overrides ``INTERLINKURL``, ``INTERLINKPORT``,
``SIDECARURL`` and ``SIDECARPORT`` win over the file. Unknown keys are logged as warnings; a value
of the wrong type stops the program with a message naming the key and the file.
"""

from __future__ import annotations

import difflib
import logging
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

log = logging.getLogger("interlink.config")

DEFAULT_PATH = "/etc/interlink/InterLinkConfig.yaml"

# Keys that belong to the Slurm plugin, the VK or other deployments and share the same file.
FOREIGN_KEYS = frozenset({
    "SbatchPath", "ScancelPath", "SqueuePath", "SinfoPath", "SingularityPrefix",
    "SingularityPath", "SingularityDefaultOptions", "Tsocks", "TsocksPath", "TsocksLoginNode",
    "BashPath", "CommandPrefix", "VKTokenFile", "VKConfigPath", "ServiceAccount", "Namespace",
    "KubernetesApiAddr", "KubernetesApiPort", "KubernetesApiCaCrt", "PodIP", "KubeletHTTP",
    "HTTP", "Resources", "NodeLabels", "NodeTaints", "ExecutorService", "SidecarService",
    "sidecarservice", "SocketPath", "EnableProbes", "CPU", "Memory", "Pods",
    "KubeletPort", "ImagePrefix", "DisableProjectedVolumes", "Slurm", "Apptainer", "Cluster",
    "Flavors", "Shell", "ContainerRuntime", "Telemetry", "JobScriptBuildConfig",
    "JobScriptTemplate", "PodLogsDirectory",
})


# Sections of the shared file that another program of this project owns and validates (the
# sidecar's policy): a program that does not model them (the API server, the CLI) leaves them
# alone, without calling them unknown.
PROGRAM_SECTIONS = frozenset({"Sidecar"})


class ConfigError(Exception):
    """The configuration cannot be used; the message names the key and the file."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class TLSConfig(_Section):
    Enabled: bool = False
    CertFile: str = ""
    KeyFile: str = ""
    CACertFile: str = ""


class PluginTLSConfig(_Section):
    """Mutual TLS between the API server and the plugin, used when ``SidecarURL`` is https://.

    Both programs read the same section, each its own half."""

    # The sidecar's half: its server certificate, and the CA that signs the API's client
    # certificate (with it, a caller without such a certificate cannot even connect).
    CertFile: str = ""
    KeyFile: str = ""
    ClientCACertFile: str = ""
    # The API server's half: the client certificate it presents, and the CA that signed the
    # sidecar's certificate (empty: the system store).
    ClientCertFile: str = ""
    ClientKeyFile: str = ""
    CACertFile: str = ""


class OIDCConfig(_Section):
    """Bearer-token validation done in-process (replaces oauth2-proxy)."""

    Issuer: str = ""
    # Where discovery is fetched from; defaults to the issuer. Useful when the issuer is reached
    # through an internal address.
    DiscoveryURL: str = ""
    Audience: list[str] = Field(default_factory=list)
    Algorithms: list[str] = Field(default_factory=lambda: [
        "RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512"])
    LeewaySeconds: int = Field(default=30, ge=0, le=600)
    GroupsClaim: str = "groups"
    RequiredGroup: str = ""
    JWKSMinRefetchSeconds: float = Field(default=30.0, ge=0)
    JWKSCacheSeconds: float = Field(default=3600.0, gt=0)
    HTTPTimeoutSeconds: float = Field(default=10.0, gt=0)
    CAFile: str = ""

    @field_validator("Audience", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        if isinstance(v, str):
            return [v] if v else []
        return v

    @property
    def enabled(self) -> bool:
        return bool(self.Issuer)


class InterLinkConfig(_Section):
    # --- upstream keys, both generations ---
    InterlinkAddress: str = ""
    InterlinkURL: str = ""
    InterlinkPort: int | None = Field(default=None, ge=0, le=65535)
    SidecarURL: str = "http://127.0.0.1"
    SidecarPort: int | None = Field(default=4000, ge=0, le=65535)
    Socket: str = ""
    DataRootFolder: str = "~/.interlink/jobs"
    VerboseLogging: bool = False
    ErrorsOnlyLogging: bool = False
    ExportPodData: bool = True
    TLS: TLSConfig = Field(default_factory=TLSConfig)

    # --- this project's keys ---
    OIDC: OIDCConfig = Field(default_factory=OIDCConfig)
    AllowInsecureNoAuth: bool = False
    # auto: tell legacy from current by the InterLink-Http-Session header.
    Profile: Literal["auto", "legacy", "current"] = "auto"
    # Shape of the /create body sent to the plugin: current plugins take an object, legacy an array.
    PluginCreateBody: Literal["object", "array"] = "object"
    PluginConnectTimeoutSeconds: float = Field(default=5.0, gt=0)
    PluginTimeoutSeconds: float = Field(default=60.0, gt=0)
    PluginMaxConnections: int = Field(default=100, ge=1)
    # /getLogs streams open through the API at once (follow or not); they have a connection
    # pool of their own, so however many are open, no other call waits for one.
    MaxLogStreams: int = Field(default=200, ge=1)
    MaxBodyBytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    LogFormat: Literal["text", "json"] = "text"
    # The credential the API server and the plugin share (interlink_common/plugin_auth.py): a
    # file holding one token; the API sends it as a bearer token, the sidecar requires it.
    PluginTokenFile: str = ""
    PluginTLS: PluginTLSConfig = Field(default_factory=PluginTLSConfig)
    # Unix sockets of both programs are 0600; with a group they are 0660 and owned by it.
    SocketGroup: str = ""
    # Host header values the API accepts besides loopback and its own address, when it runs
    # without token validation (a browser page cannot forge those).
    AllowedHosts: list[str] = Field(default_factory=list)

    @field_validator("InterlinkPort", "SidecarPort", mode="before")
    @classmethod
    def _port(cls, v: Any) -> Any:
        # Upstream files quote ports ("3000"); an empty string means unset.
        if isinstance(v, str):
            v = v.strip()
            return None if v == "" else v
        return v

    # --- derived ---

    @property
    def data_root(self) -> Path:
        return Path(os.path.expanduser(self.DataRootFolder))

    @property
    def sidecar_base(self) -> str:
        """Plugin base URL (``http://host:port``) or ``unix:///path``."""
        url = self.SidecarURL.rstrip("/")
        if url.startswith("unix://"):
            return url
        if self.SidecarPort:
            return f"{url}:{self.SidecarPort}"
        return url


def resolve_path(cli_path: str | None) -> Path:
    return Path(cli_path or os.environ.get("INTERLINKCONFIGPATH") or DEFAULT_PATH)


_ENV_OVERRIDES = {
    "INTERLINKURL": "InterlinkURL",
    "INTERLINKPORT": "InterlinkPort",
    "SIDECARURL": "SidecarURL",
    "SIDECARPORT": "SidecarPort",
}


def load_config(cli_path: str | None = None, *, required: bool = True,
                extra_sections: dict[str, type[BaseModel]] | None = None) -> InterLinkConfig:
    """Load and validate the config file, then apply the env overrides.

    ``extra_sections`` lets a program declare more top-level keys it owns (the sidecar's policy,
    for example) so that they are validated here too instead of being warned about.
    """
    path = resolve_path(cli_path)
    raw: dict[str, Any] = {}
    if path.exists():
        try:
            loaded = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path}: cannot read the config file: {exc}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the config file must be a YAML mapping of keys, "
                              f"got {type(loaded).__name__}")
        raw = loaded
    elif required:
        raise ConfigError(f"{path}: config file not found (set --config or INTERLINKCONFIGPATH)")

    for env, key in _ENV_OVERRIDES.items():
        if os.environ.get(env):
            raw[key] = os.environ[env]

    model = _model_with(extra_sections or {})
    _warn_unknown(raw, model, path)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path)) from None


def _model_with(extra_sections: dict[str, type[BaseModel]]) -> type[InterLinkConfig]:
    if not extra_sections:
        return InterLinkConfig
    from pydantic import create_model

    fields: dict[str, Any] = {name: (cls, Field(default_factory=cls))
                              for name, cls in extra_sections.items()}
    return create_model("SiteConfig", __base__=InterLinkConfig, **fields)


def _warn_unknown(raw: dict[str, Any], model: type[BaseModel], path: Path) -> None:
    known = set(model.model_fields)
    for key, value in raw.items():
        if key in FOREIGN_KEYS:
            continue
        if key not in known:
            if key in PROGRAM_SECTIONS:
                continue
            hint = difflib.get_close_matches(str(key), sorted(known), n=1)
            suffix = f" (did you mean {hint[0]!r}?)" if hint else ""
            log.warning("%s: unknown key %r is ignored%s", path, key, suffix)
            continue
        section = model.model_fields[key].annotation
        if isinstance(value, dict) and isinstance(section, type) and issubclass(section, BaseModel):
            for sub in value:
                if sub not in section.model_fields:
                    hint = difflib.get_close_matches(str(sub), sorted(section.model_fields), n=1)
                    suffix = f" (did you mean {hint[0]!r}?)" if hint else ""
                    log.warning("%s: unknown key %s.%s is ignored%s", path, key, sub, suffix)


def _describe(exc: ValidationError, path: Path) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        got = err.get("input")
        shown = "<hidden>" if any(s in key.lower() for s in ("secret", "password", "token")) \
            else repr(got)
        lines.append(f"{path}: key {key}: {err['msg']} (got {shown})")
    return "\n".join(lines)
