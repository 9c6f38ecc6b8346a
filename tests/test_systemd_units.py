"""The systemd units as systemd itself reads them: `systemd-analyze verify` finds nothing to
say, and `systemd-analyze security` rates the API's and the token refresher's units at most 2.0 and the sidecar's (root,
in the host's mount namespace) at most 5.0."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from procs import ROOT

UNITS = ROOT / "configs" / "systemd"
CEILING = {"interlink-api.service": 2.0, "docker-sidecar.service": 5.0,
           "interlink-token.service": 2.0}


@pytest.fixture(scope="module")
def analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        message = "systemd-analyze not found (Debian's systemd package)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.mark.parametrize("unit", sorted(CEILING))
def test_exposure_is_at_most_the_ceiling(analyze, unit) -> None:
    done = subprocess.run([analyze, "security", "--offline=true", "--no-pager",
                           str(UNITS / unit)], capture_output=True, text=True, timeout=60)
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d)", done.stdout + done.stderr)
    assert found, done.stdout + done.stderr
    assert float(found.group(1)) <= CEILING[unit], done.stdout


def test_units_verify_clean(analyze, tmp_path: Path) -> None:
    # verify wants the programs and the units they order after to exist: stand-ins for both.
    for unit in CEILING:
        text = (UNITS / unit).read_text().replace("/opt/interlink/.venv/bin/", "/bin/true ")
        (tmp_path / unit).write_text(text)
    (tmp_path / "docker.service").write_text("[Service]\nExecStart=/bin/true\n")
    done = subprocess.run([analyze, "verify", "--man=no", *(str(tmp_path / u) for u in CEILING)],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "SYSTEMD_UNIT_PATH": f"{tmp_path}:"})
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr
