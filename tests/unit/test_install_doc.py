"""docs/INSTALL.md kept honest: every ``interlink`` command it shows parses with the CLI's own
parser, every config it shows loads without a warning, every repository file it copies or
links exists, the paths it chooses are the ones the systemd units create, and the doctor and
status output it shows has the CLI's own format."""

from __future__ import annotations

import logging
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import yaml

from docker_sidecar.policy import SidecarPolicy
from interlink_cli.cli import build_parser
from interlink_cli.doctor import Finding
from interlink_cli.endpoints import vk_token_file
from interlink_cli.output import STATUS_HEADERS
from interlink_common.config import InterLinkConfig, load_config
from interlink_common.listen import api_listener

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "INSTALL.md"
UNITS = ROOT / "configs" / "systemd"
NODE_CONFIG = "# /etc/interlink/InterLinkConfig.yaml"
VK_CONFIG = "# the VK's InterLinkConfig.yaml"
# The order doctor checks the parts in (interlink_cli/doctor.py).
DOCTOR_PARTS = ("config", "docker", "sidecar", "gpus", "api", "token")


@dataclass(frozen=True)
class Block:
    lang: str
    text: str
    line: int  # of the opening fence, for messages


def blocks(lang: str | None = None) -> list[Block]:
    found, current, start, body = [], None, 0, []
    for n, line in enumerate(DOC.read_text().splitlines(), 1):
        if current is None and line.startswith("```"):
            current, start, body = line[3:].strip(), n, []
        elif current is not None and line.strip() == "```":
            found.append(Block(current, "\n".join(body) + "\n", start))
            current = None
        elif current is not None:
            body.append(line)
    assert current is None, f"INSTALL.md: the block opened at line {start} is never closed"
    return [b for b in found if lang is None or b.lang == lang]


def shell_lines(text: str) -> tuple[list[str], list[str]]:
    """A shell block's commands (continuations joined) and its here-documents' lines."""
    commands, heredoc, pending, end = [], [], "", None
    for line in text.splitlines():
        if end is not None:
            if line.strip() == end:
                end = None
            else:
                heredoc.append(line)
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        if (m := re.search(r"<<-?\s*'?(\w+)'?", pending)):
            end = m.group(1)
        if pending.strip():
            commands.append(pending.strip())
        pending = ""
    return commands, heredoc


def unit_lines(text: str) -> list[str]:
    joined, pending = [], ""
    for line in text.splitlines():
        pending += line.strip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        joined.append(pending)
        pending = ""
    return joined


def cli_argv(command: str) -> list[str] | None:
    """The arguments of an ``interlink`` command line, or None for any other command."""
    words = shlex.split(command, comments=True)
    if words and words[0].startswith("ExecStart="):
        words[0] = words[0][len("ExecStart="):]
    if not words or not (words[0] == "interlink" or words[0].endswith("/.venv/bin/interlink")):
        return None
    return words[1:]


def all_cli_commands() -> list[tuple[str, list[str]]]:
    found = []
    for b in blocks("sh"):
        commands, heredoc = shell_lines(b.text)
        for c in commands + [h for h in heredoc if h.startswith("ExecStart=")]:
            argv = cli_argv(c)
            if argv is not None:
                found.append((f"INSTALL.md:{b.line}: {c}", argv))
    return found


def unit(name: str) -> list[str]:
    return unit_lines((UNITS / name).read_text())


def setting(name: str, key: str) -> str:
    values = [line.split("=", 1)[1] for line in unit(name) if line.startswith(f"{key}=")]
    assert values, f"{name} has no {key}="
    return values[-1]


def config_block(marker: str) -> dict:
    found = [b for b in blocks("yaml") if b.text.startswith(marker)]
    assert len(found) == 1, f"INSTALL.md: one yaml block starting {marker!r}"
    return yaml.safe_load(found[0].text)


def test_every_interlink_command_parses(capsys) -> None:
    seen = set()
    for where, argv in all_cli_commands():
        try:
            seen.add(build_parser().parse_args(argv).command)
        except SystemExit as exc:
            assert exc.code == 0 and argv == ["--version"], f"{where}: does not parse"
            seen.add("--version")
    # The walk-through's own promise: it shows each of these.
    assert {"--version", "doctor", "create", "status", "logs", "delete", "token"} <= seen


def test_the_units_exec_lines_parse_too() -> None:
    for name in ("interlink-token.service",):
        for line in unit(name):
            if line.startswith("ExecStart=") and (argv := cli_argv(line)) is not None:
                build_parser().parse_args(argv)


def test_every_yaml_block_parses() -> None:
    for b in blocks("yaml"):
        assert isinstance(yaml.safe_load(b.text), dict), f"INSTALL.md:{b.line}"


def test_the_node_config_loads_in_every_program_without_a_warning(tmp_path, caplog,
                                                                  monkeypatch) -> None:
    for env in ("INTERLINKURL", "INTERLINKPORT", "SIDECARURL", "SIDECARPORT"):
        monkeypatch.delenv(env, raising=False)
    path = tmp_path / "InterLinkConfig.yaml"
    path.write_text(yaml.safe_dump(config_block(NODE_CONFIG)))
    caplog.set_level(logging.WARNING, logger="interlink.config")
    api = load_config(str(path))  # the API server and the CLI
    node = load_config(str(path), extra_sections={"Sidecar": SidecarPolicy})  # the sidecar
    assert [r.getMessage() for r in caplog.records] == []
    listener = api_listener(api.InterlinkAddress, api.InterlinkURL, api.InterlinkPort, api.TLS)
    assert listener.scheme == "https" and not listener.is_local
    assert api.OIDC.enabled and api.OIDC.Audience
    assert node.Sidecar.GPU.Enabled == "on"  # type: ignore[attr-defined]


def test_the_node_configs_paths_are_the_ones_the_units_make() -> None:
    cfg = load_config_dict(config_block(NODE_CONFIG))
    # The sidecar's socket in its RuntimeDirectory, its data in its StateDirectory.
    run = f"/run/{setting('docker-sidecar.service', 'RuntimeDirectory')}/"
    state = f"/var/lib/{setting('docker-sidecar.service', 'StateDirectory')}/"
    assert cfg.Socket.startswith(f"unix://{run}") and cfg.SidecarURL == cfg.Socket
    assert cfg.DataRootFolder.startswith(state)
    # The socket's group is the API's, so the API may connect.
    assert cfg.SocketGroup == setting("interlink-api.service", "Group")
    # VKTokenFile is the file the token unit writes, in that unit's StateDirectory.
    out = cli_argv(setting("interlink-token.service", "ExecStart"))
    assert out is not None
    written = out[out.index("--out") + 1]
    assert vk_token_file(cfg) == written
    assert written.startswith(f"/var/lib/{setting('interlink-token.service', 'StateDirectory')}/")
    # The TLS files are the ones step 4 puts in place.
    text = DOC.read_text()
    for f in (cfg.TLS.CertFile, cfg.TLS.KeyFile):
        assert f"-out {f}" in text or f"-keyout {f}" in text, f


def load_config_dict(raw: dict) -> InterLinkConfig:
    return InterLinkConfig.model_validate(raw)


def test_the_vks_config_points_where_the_cli_calls() -> None:
    vk = load_config_dict(config_block(VK_CONFIG))
    target = f"{vk.InterlinkURL}:{vk.InterlinkPort}"  # what the VK dials
    for where, argv in all_cli_commands():
        if "--url" in argv:
            assert argv[argv.index("--url") + 1] == target, where
    assert vk_token_file(vk)


def test_repository_files_it_names_exist() -> None:
    named = set()
    for b in blocks("sh"):
        commands, _ = shell_lines(b.text)
        for c in commands:
            named |= {w for w in shlex.split(c, comments=True)
                      if re.match(r"(configs|examples|scripts)/", w)}
    assert {"configs/systemd/interlink-api.service", "examples/hello-pod.yaml",
            "scripts/bootstrap"} <= named
    for word in named:
        assert (ROOT / word).exists(), word
    # Every relative link of the page, too.
    for target in re.findall(r"\]\((?!https?://)([^)#]+)", DOC.read_text()):
        assert (DOC.parent / target).exists(), target


def test_the_doctor_output_shown_is_doctors_format() -> None:
    found = [b for b in blocks("text") if b.text.startswith("OK   config")]
    assert len(found) == 1
    lines = found[0].text.splitlines()
    parts = []
    for line in lines:
        m = re.match(r"(OK  |FAIL) (\S+)\s+(.*)$", line)
        assert m, line
        parts.append(m.group(2))
        assert Finding(m.group(1) == "OK  ", m.group(2), m.group(3)).line() == line
    assert tuple(parts) == DOCTOR_PARTS


def test_the_status_table_shown_has_the_clis_columns() -> None:
    found = [b for b in blocks("text") if b.text.startswith("NAMESPACE")]
    assert len(found) == 1
    assert tuple(found[0].text.splitlines()[0].split()) == STATUS_HEADERS
