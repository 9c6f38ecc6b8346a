"""Run the sidecar and the API server together, from one config file (``scripts/run``).

Both are started as child processes; Ctrl-C or SIGTERM stops both, and if either one exits the
other is stopped too, so a broken half never keeps running alone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time


def main() -> int:
    config = os.environ.get("INTERLINKCONFIGPATH", "")
    args = ["--config", config] if config else []
    children = [
        subprocess.Popen([sys.executable, "-m", "docker_sidecar", *args]),
        subprocess.Popen([sys.executable, "-m", "interlink_api", *args]),
    ]
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    code = 0
    while not stopping:
        for child in children:
            if child.poll() is not None:
                code = child.returncode or 1
                stopping = True
        time.sleep(0.2)
    for child in children:
        if child.poll() is None:
            child.terminate()
    for child in children:
        try:
            child.wait(15)
        except subprocess.TimeoutExpired:
            child.kill()
    return code


if __name__ == "__main__":
    sys.exit(main())
