"""Sidecar benchmark on the real Docker Engine.

1. Time from ``/create`` to ``running`` for a one-container pod, against the raw Docker SDK
   doing the same container starts (an infra container plus one container joined to it),
   interleaved in the same run. Target: at most 100 ms added at the median.
2. ``/status`` for 100 running pods in one call. Target: at most 100 ms at the median.
3. The sidecar's resident memory with 100 pods. Target: under 150 MB.

Run from the repository root: ``.venv/bin/python bench/bench_sidecar.py [--pods 100] [--starts 15]``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import docker
import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from kube import container, create_body, pod  # noqa: E402
from procs import start_sidecar  # noqa: E402

IMAGE, PAUSE = "interlink-test/busybox:1", "interlink-test/pause:1"


def raw_sdk_start(client: docker.DockerClient, label: str) -> float:
    """What the sidecar does for one pod, done directly: infra, then one joined container."""
    uid = uuid.uuid4().hex
    labels = {"io.interlink.bench": label}
    start = time.perf_counter()
    infra = client.containers.run(PAUSE, name=f"bench-infra-{uid}", detach=True, labels=labels,
                                  hostname="bench", ipc_mode="shareable")
    main = client.containers.run(IMAGE, ["sleep", "3600"], name=f"bench-main-{uid}", detach=True,
                                 labels=labels, network_mode=f"container:{infra.id}",
                                 ipc_mode=f"container:{infra.id}")
    while client.api.inspect_container(main.id)["State"]["Status"] != "running":
        time.sleep(0.002)
    elapsed = time.perf_counter() - start
    for c in (main, infra):
        c.remove(force=True)
    return elapsed


def sidecar_start(http: httpx.Client) -> tuple[float, dict]:
    p = pod(f"bench-{uuid.uuid4().hex[:8]}", [container("main", "exec sleep 3600")], grace=0)
    start = time.perf_counter()
    r = http.post("/create", json=create_body(p))
    r.raise_for_status()
    while True:
        state = http.request("GET", "/status", json=[p]).json()[0]["containers"][0]["state"]
        if "running" in state:
            return time.perf_counter() - start, p
        time.sleep(0.002)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pods", type=int, default=100)
    parser.add_argument("--starts", type=int, default=15)
    args = parser.parse_args()

    subprocess.run([str(ROOT / "tests/images/build.sh")], check=True)
    client = docker.from_env()
    tmp = Path(tempfile.mkdtemp(prefix="bench-sidecar-"))
    instance = f"bench-{uuid.uuid4().hex[:8]}"
    proc = start_sidecar(tmp, instance=instance, data_root=tmp / "data")
    http = httpx.Client(base_url=proc.base, timeout=120)
    label = instance
    try:
        raw, ours = [], []
        for i in range(args.starts + 2):  # two warm-up rounds, interleaved A/B after that
            a = raw_sdk_start(client, label)
            b, p = sidecar_start(http)
            http.request("DELETE", "/delete", json=p)
            if i >= 2:
                raw.append(a)
                ours.append(b)
        added = [b - a for a, b in zip(raw, ours)]

        pods = [pod(f"load-{i}", [container("main", "exec sleep 3600")], grace=0)
                for i in range(args.pods)]
        rss_idle = rss_mb(proc.popen.pid)
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda p: http.post("/create", json=create_body(p)).raise_for_status(),
                          pods))
        deadline = time.monotonic() + 600
        while True:
            statuses = http.request("GET", "/status", json=pods).json()
            if all("running" in s["containers"][0]["state"] for s in statuses):
                break
            if time.monotonic() > deadline:
                raise SystemExit("pods did not all start in 10 minutes")
            time.sleep(0.5)
        timings = []
        for _ in range(50):
            t0 = time.perf_counter()
            r = http.request("GET", "/status", json=pods)
            assert len(r.json()) == args.pods
            timings.append(time.perf_counter() - t0)
        # Baseline for the status call: one Docker list of the same containers.
        list_timings = []
        for _ in range(20):
            t0 = time.perf_counter()
            client.api.containers(all=True, filters={"label": f"io.interlink.managed={instance}"})
            list_timings.append(time.perf_counter() - t0)
        rss_loaded = rss_mb(proc.popen.pid)
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda p: http.request("DELETE", "/delete", json=p), pods))
    finally:
        http.close()
        proc.stop()
        for c in client.containers.list(all=True, filters={"label": f"io.interlink.managed={instance}"}):
            c.remove(force=True)
        for c in client.containers.list(all=True, filters={"label": f"io.interlink.bench={label}"}):
            c.remove(force=True)

    ms = lambda xs: f"{statistics.median(xs) * 1000:.1f} ms"  # noqa: E731
    p90 = lambda xs: f"{statistics.quantiles(xs, n=10)[-1] * 1000:.1f} ms"  # noqa: E731
    print(f"machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"Docker {client.version()['Version']}")
    print("| measurement | baseline | docker-sidecar | target |")
    print("|---|---|---|---|")
    print(f"| one-container pod, create -> running (median; p90) | raw SDK: {ms(raw)}; {p90(raw)} "
          f"| {ms(ours)}; {p90(ours)} | added <= 100 ms |")
    print(f"| added by the sidecar (median of paired differences) | - | {ms(added)} | <= 100 ms |")
    print(f"| /status for {args.pods} pods in one call (median; p90) | one Docker list call: "
          f"{ms(list_timings)} | {ms(timings)}; {p90(timings)} | <= 100 ms |")
    print(f"| sidecar RSS, idle -> {args.pods} running pods | - | {rss_idle:.0f} MB -> "
          f"{rss_loaded:.0f} MB | < 150 MB |")


if __name__ == "__main__":
    main()
