"""Config loader: both key generations, env overrides, warnings and clear errors."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from interlink_common.config import ConfigError, load_config
from interlink_common.listen import api_listener, parse_listener

LEGACY = """\
InterlinkURL: "http://0.0.0.0"
InterlinkPort: "30080"
SidecarURL: "http://127.0.0.1"
SidecarPort: "4000"
VerboseLogging: true
ErrorsOnlyLogging: false
ExportPodData: true
DataRootFolder: ".local/interlink/jobs/"
SbatchPath: "/usr/bin/sbatch"
ScancelPath: "/usr/bin/scancel"
Tsocks: false
"""

CURRENT = """\
InterlinkAddress: "unix:///var/run/interlink/api.sock"
InterlinkPort: "0"
SidecarURL: "unix:///var/run/interlink/sidecar.sock"
SidecarPort: "0"
VerboseLogging: false
ErrorsOnlyLogging: false
DataRootFolder: "/var/lib/interlink/jobs"
TLS:
  Enabled: false
OIDC:
  Issuer: https://iam.example.org/
  Audience: users
  GroupsClaim: wlcg.groups
  RequiredGroup: /interlink
"""


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for key in ("INTERLINKURL", "INTERLINKPORT", "SIDECARURL", "SIDECARPORT",
                "INTERLINKCONFIGPATH"):
        monkeypatch.delenv(key, raising=False)


def write(tmp_path: Path, text: str) -> str:
    p = tmp_path / "InterLinkConfig.yaml"
    p.write_text(text)
    return str(p)


def test_legacy_keys_load_and_listen_on_all_interfaces(tmp_path):
    cfg = load_config(write(tmp_path, LEGACY))
    assert cfg.InterlinkPort == 30080
    assert cfg.sidecar_base == "http://127.0.0.1:4000"
    listener = api_listener(cfg.InterlinkAddress, cfg.InterlinkURL, cfg.InterlinkPort, cfg.TLS)
    assert listener.describe() == "http://0.0.0.0:30080"
    assert not listener.is_local


def test_legacy_data_root_is_joined_as_a_path(tmp_path):
    cfg = load_config(write(tmp_path, LEGACY))
    assert (cfg.data_root / "pod").as_posix().endswith(".local/interlink/jobs/pod")


def test_current_keys_load_with_unix_sockets_and_oidc(tmp_path):
    cfg = load_config(write(tmp_path, CURRENT))
    assert cfg.sidecar_base == "unix:///var/run/interlink/sidecar.sock"
    listener = api_listener(cfg.InterlinkAddress, cfg.InterlinkURL, cfg.InterlinkPort, cfg.TLS)
    assert listener.uvicorn_kwargs() == {"uds": "/var/run/interlink/api.sock"}
    assert listener.is_local
    assert cfg.OIDC.Audience == ["users"]
    assert cfg.OIDC.GroupsClaim == "wlcg.groups"


def test_foreign_keys_are_silent_and_unknown_keys_warned_with_a_hint(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="interlink.config")
    load_config(write(tmp_path, LEGACY + "SidecarPrt: 5\nOIDC:\n  Isuer: x\n"))
    messages = [r.getMessage() for r in caplog.records]
    assert any("'SidecarPrt'" in m and "did you mean 'SidecarPort'" in m for m in messages)
    assert any("OIDC.Isuer" in m and "'Issuer'" in m for m in messages)
    assert not any("SbatchPath" in m or "Tsocks" in m for m in messages)


def test_wrong_type_names_key_and_file(tmp_path):
    path = write(tmp_path, LEGACY.replace('"30080"', '"thirty"'))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "InterlinkPort" in str(err.value) and path in str(err.value)


def test_wrong_type_in_section_names_dotted_key(tmp_path):
    path = write(tmp_path, CURRENT + "  LeewaySeconds: soon\n")
    with pytest.raises(ConfigError, match=r"OIDC\.LeewaySeconds"):
        load_config(path)


def test_not_a_mapping_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="YAML mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))


def test_missing_file_is_an_error_naming_the_path(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(str(tmp_path / "nope.yaml"))


def test_env_path_and_overrides(tmp_path, monkeypatch):
    monkeypatch.setenv("INTERLINKCONFIGPATH", write(tmp_path, LEGACY))
    monkeypatch.setenv("SIDECARURL", "http://10.0.0.5")
    monkeypatch.setenv("SIDECARPORT", "4444")
    monkeypatch.setenv("INTERLINKPORT", "31000")
    cfg = load_config(None)
    assert cfg.sidecar_base == "http://10.0.0.5:4444"
    assert cfg.InterlinkPort == 31000


def test_cli_path_wins_over_env(tmp_path, monkeypatch):
    other = tmp_path / "other.yaml"
    other.write_text("InterlinkPort: 1234\n")
    monkeypatch.setenv("INTERLINKCONFIGPATH", write(tmp_path, LEGACY))
    assert load_config(str(other)).InterlinkPort == 1234


def test_https_needs_cert_and_key(tmp_path):
    cfg = load_config(write(tmp_path, CURRENT.replace("Enabled: false", "Enabled: true")
                            .replace("unix:///var/run/interlink/api.sock", "https://0.0.0.0")
                            .replace('InterlinkPort: "0"', "InterlinkPort: 8443")))
    with pytest.raises(ConfigError, match="CertFile"):
        api_listener(cfg.InterlinkAddress, cfg.InterlinkURL, cfg.InterlinkPort, cfg.TLS)


def test_listener_rejects_unknown_scheme():
    from interlink_common.config import TLSConfig
    with pytest.raises(ConfigError, match="ftp"):
        parse_listener("ftp://host", 1, TLSConfig(), key="InterlinkAddress")


@pytest.mark.parametrize("name", ["InterLinkConfig.example.yaml", "local.yaml", "compose.yaml"])
def test_shipped_configs_load_without_warnings(name, caplog):
    from docker_sidecar.policy import SidecarPolicy

    caplog.set_level(logging.WARNING, logger="interlink.config")
    path = Path(__file__).parents[2] / "configs" / name
    cfg = load_config(str(path), extra_sections={"Sidecar": SidecarPolicy})
    assert caplog.records == []
    assert cfg.sidecar_base.startswith("http://127.0.0.1")


def test_the_sidecars_section_is_left_alone_by_programs_that_do_not_model_it(tmp_path, caplog):
    # One file for both programs: the API server and the CLI read it without the sidecar's
    # policy, and must not call its section unknown; the sidecar still warns about its keys.
    from docker_sidecar.policy import SidecarPolicy

    caplog.set_level(logging.WARNING, logger="interlink.config")
    path = write(tmp_path, CURRENT + "Sidecar:\n  PidsLimt: 5\n")
    load_config(path)
    assert caplog.records == []
    load_config(path, extra_sections={"Sidecar": SidecarPolicy})
    assert [r.getMessage() for r in caplog.records] == [
        f"{path}: unknown key Sidecar.PidsLimt is ignored (did you mean 'PidsLimit'?)"]
