"""Benchmark: what interlink-api adds on top of the plugin for the VK's hottest call, /status.

Not a pytest test. Run from the repository root:

    python bench/bench_api.py [--n 2000] [--clients 200] [--duration 10]

It starts tests/fake_plugin.py (a real plugin process) and the real ``interlink-api`` process in
front of it, both on loopback, and measures:

1. per-request latency of ``/status`` for ONE Running pod (a Running pod is always forwarded to the
   plugin: that is the cache's semantics) through the API vs. the same body sent straight to the
   plugin, one keep-alive ``httpx.Client`` each, calls interleaved so both see the same noise;
2. the same for a Succeeded pod that is already cached (answered without a plugin call);
3. sustained load: N concurrent clients, each polling /status for its own Running pod for a fixed
   time, through the API and (baseline) straight to the plugin;
4. the web framework's own cost per request, in-process: the API's routes (same paths, same
   methods, the same raw-Request endpoint, the same RequestObserver middleware) served by
   FastAPI as interlink-api serves them (``interlink_common.openapi.raw_app``: FastAPI's app and
   document, routes served by Starlette's request handler), and by plain Starlette, both called
   straight through ASGI (no sockets), interleaved.

Everything runs on one machine: the numbers include the client's own CPU, which competes with the
two servers for the same cores (under load the httpx load generator is itself a large CPU user, so
the baseline throughput is partly client-bound). Compare columns, not absolute values across
machines; the "server CPU per request" row is the least noisy number on a shared machine.
The exit status is 1 when the added-latency target or the framework budget is missed, or any load
request failed.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import math
import os
import platform
import signal
import ssl
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for p in (str(ROOT), str(ROOT / "tests")):
    if p not in sys.path:
        sys.path.insert(0, p)

import httpx  # noqa: E402
# Module level: FastAPI resolves an endpoint's (postponed) annotations in its module's globals.
from starlette.requests import Request  # noqa: E402

from procs import start_api, start_fake_plugin  # noqa: E402

TARGET_ADDED_MS = 2.0
TARGET_FRAMEWORK_US = 50.0
FIXTURE = ROOT / "tests" / "fixtures" / "current_create_notebook.json"


# --- helpers -------------------------------------------------------------------------------------

def make_pod(template: dict, uid: str, phase: str, name: str | None = None) -> dict:
    pod = copy.deepcopy(template)
    pod["metadata"]["uid"] = uid
    if name:
        pod["metadata"]["name"] = name
    pod["status"] = {"phase": phase}
    return pod


def status_body(pod: dict) -> bytes:
    """What the current VK sends: a one-element list, Go-style compact JSON."""
    return json.dumps([pod], separators=(",", ":")).encode()


def headers(op: str = "GetPodStatus", n: int = 1) -> dict[str, str]:
    return {"Content-Type": "application/json", "InterLink-Http-Session": f"{op}#{n}",
            "Authorization": "Bearer bench"}


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of an unsorted list."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(q / 100 * len(s)) - 1))
    return s[k]


def cpu_seconds(pid: int) -> float | None:
    """user+system CPU seconds of a process so far (Linux /proc), None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def ms(x: float) -> str:
    return f"{x * 1000:.2f} ms"


def machine_info() -> str:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "?"
    import fastapi
    import starlette
    import uvicorn
    try:
        import httptools  # noqa: F401
        http_impl = "httptools available"
    except ImportError:
        http_impl = "h11 (httptools not installed)"
    try:
        import uvloop  # noqa: F401
        loop_impl = "uvloop available"
    except ImportError:
        loop_impl = "asyncio loop (uvloop not installed)"
    try:
        import sniffio  # noqa: F401
        sniff = "sniffio installed"
    except ImportError:
        # httpcore imports sniffio lazily on every lock/event set-up; a failed import is not
        # cached, so each plugin call through httpx.AsyncClient pays several sys.path scans.
        sniff = "sniffio NOT installed (httpcore retries the import on every async request)"
    nproc = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (f"- nproc: {nproc} ({cpu}); load average before run: {load}\n"
            f"- python: {sys.version.split()[0]} ({platform.python_implementation()}), "
            f"{platform.system()} {platform.release()}\n"
            f"- uvicorn {uvicorn.__version__} [{http_impl}; {loop_impl}], "
            f"fastapi {fastapi.__version__}, starlette {starlette.__version__}, "
            f"httpx {httpx.__version__}; {sniff}")


# --- 1 + 2: interleaved per-request latency ------------------------------------------------------

def check(r: httpx.Response, uid: str) -> None:
    if r.status_code != 200 or uid.encode() not in r.content:
        raise RuntimeError(f"unexpected reply {r.status_code}: {r.text[:300]}")


def latency(api_base: str, plugin_base: str, template: dict, n: int, warmup: int) -> dict:
    running_uid = str(uuid.uuid4())
    done_uid = str(uuid.uuid4())
    running = status_body(make_pod(template, running_uid, "Running", "bench-running"))
    done = status_body(make_pod(template, done_uid, "Succeeded", "bench-done"))
    hdr = headers()
    timeout = httpx.Timeout(10.0)
    api = httpx.Client(base_url=api_base, timeout=timeout, trust_env=False)
    direct = httpx.Client(base_url=plugin_base, timeout=timeout, trust_env=False)
    try:
        # Prime the cache with the Succeeded pod (its first call goes to the plugin, like any
        # pod not cached yet); after that it is answered from the cache.
        check(api.request("GET", "/status", content=done, headers=hdr), done_uid)

        calls = {
            "api": lambda: api.request("GET", "/status", content=running, headers=hdr),
            "direct": lambda: direct.request("GET", "/status", content=running, headers=hdr),
            "cached": lambda: api.request("GET", "/status", content=done, headers=hdr),
        }
        uids = {"api": running_uid, "direct": running_uid, "cached": done_uid}
        order = list(calls)
        for i in range(warmup):
            for name in order:
                check(calls[name](), uids[name])
        times: dict[str, list[float]] = {name: [] for name in order}
        clock = time.perf_counter
        for i in range(n):
            # Rotate who goes first so no kind always follows the same other kind.
            k = i % len(order)
            for name in order[k:] + order[:k]:
                t0 = clock()
                r = calls[name]()
                t1 = clock()
                check(r, uids[name])
                times[name].append(t1 - t0)
    finally:
        api.close()
        direct.close()
    paired = [a - d for a, d in zip(times["api"], times["direct"])]
    paired_cached = [c - d for c, d in zip(times["cached"], times["direct"])]
    return {"times": times, "paired": paired, "paired_cached": paired_cached}


# --- 4: framework cost, in-process ---------------------------------------------------------------

def framework_apps() -> dict:
    """The API's route table twice, FastAPI and plain Starlette, around one raw-Request endpoint
    that reads the body as the API's handlers do."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.responses import Response
    from starlette.routing import Route

    from interlink_api.app import ANY_METHOD, OPEN_ROUTES, VK_ROUTES
    from interlink_api.schema import VK_DOCS
    from interlink_common.observe import RequestObserver
    from interlink_common.openapi import raw_app

    async def endpoint(request: Request) -> Response:
        body = await request.body()
        return Response(b"[]" if body else b"", media_type="application/json")

    seen: list[int] = []

    def record(route: str, method: str, status: int, seconds: float) -> None:
        seen.append(status)

    middleware = [Middleware(RequestObserver, routes=VK_ROUTES + OPEN_ROUTES, record=record)]
    fast = raw_app(middleware=middleware)  # as interlink-api builds its app
    for path, doc in VK_DOCS.items():
        fast.add_api_route(path, endpoint, methods=list(doc.methods), response_class=Response,
                           operation_id=path.lstrip("/"), openapi_extra=doc.openapi_extra(),
                           responses=doc.all_responses())
        fast.add_api_route(path, endpoint, include_in_schema=False, response_class=Response,
                           methods=[m for m in ANY_METHOD if m not in doc.methods])
    for path in OPEN_ROUTES:
        fast.add_api_route(path, endpoint, methods=["GET", "HEAD"], response_class=Response)
    plain = Starlette(middleware=middleware, routes=[
        *(Route(path, endpoint, methods=ANY_METHOD) for path in VK_ROUTES),
        *(Route(path, endpoint, methods=["GET", "HEAD"]) for path in OPEN_ROUTES)])
    return {"starlette": plain, "fastapi": fast}


async def _framework(n: int, warmup: int, body: bytes) -> dict:
    apps = framework_apps()
    headers = [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode()),
               (b"interlink-http-session", b"GetPodStatus#1")]

    async def call(app) -> int:
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                 "method": "GET", "scheme": "http", "path": "/status", "raw_path": b"/status",
                 "root_path": "", "query_string": b"", "headers": headers,
                 "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
                 "state": {}}
        status = 0
        sent = False

        async def receive():
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        await app(scope, receive, send)
        return status

    order = list(apps)
    for _ in range(warmup):
        for name in order:
            if await call(apps[name]) != 200:
                raise RuntimeError(f"{name} app did not answer 200")
    times: dict[str, list[float]] = {name: [] for name in order}
    clock = time.perf_counter
    for i in range(n):
        for name in (order if i % 2 else order[::-1]):
            t0 = clock()
            await call(apps[name])
            times[name].append(clock() - t0)
    paired = [f - s for f, s in zip(times["fastapi"], times["starlette"])]
    return {"times": times, "paired": paired}


def framework(n: int, warmup: int, body: bytes) -> dict:
    """Per-request cost of FastAPI vs. plain Starlette for the API's route table."""
    try:
        import uvloop
        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    return runner(_framework(n, warmup, body))


def us(x: float) -> str:
    return f"{x * 1e6:.1f} µs"


# --- 3: sustained load ---------------------------------------------------------------------------

async def _load(base: str, template: dict, clients: int, duration: float,
                max_per_client: int, shared_pool: bool, pids: dict[str, int]) -> dict:
    bodies = []
    for i in range(clients):
        uid = str(uuid.uuid4())
        bodies.append((uid, status_body(make_pod(template, uid, "Running", f"bench-load-{i}"))))
    latencies: list[float] = []
    errors: list[str] = []
    counts = [0]
    clock = time.perf_counter
    timeout = httpx.Timeout(30.0)
    # Plain http on loopback; one TLS context for all clients (each AsyncClient would otherwise
    # build its own, tens of ms apiece).
    tls = ssl.create_default_context()
    # One keep-alive connection per client. By default every client has its own AsyncClient:
    # httpcore's pool does O(connections) work per request event, so ONE AsyncClient with 200
    # connections spends most of this process's CPU in the pool and the load generator, not the
    # servers, becomes the bottleneck (see --shared-pool).
    if shared_pool:
        one_client = httpx.AsyncClient(
            base_url=base, timeout=timeout, trust_env=False, verify=tls,
            limits=httpx.Limits(max_connections=clients, max_keepalive_connections=clients))
        pool = [one_client] * clients
    else:
        pool = [httpx.AsyncClient(base_url=base, timeout=timeout, trust_env=False, verify=tls,
                                  limits=httpx.Limits(max_connections=1,
                                                      max_keepalive_connections=1))
                for _ in range(clients)]

    async def one(client: httpx.AsyncClient, uid: str, body: bytes, n: int) -> None:
        t0 = clock()
        try:
            r = await client.request("GET", "/status", content=body,
                                     headers=headers("GetPodStatus", n))
            if r.status_code != 200 or uid.encode() not in r.content:
                errors.append(f"HTTP {r.status_code}: {r.text[:200]}")
                return
        except Exception as exc:  # noqa: BLE001 - every failure is an error to count
            errors.append(f"{type(exc).__name__}: {exc!r}")
            return
        latencies.append(clock() - t0)

    try:
        # Open every connection first (one request each), so the timed part is steady state.
        await asyncio.gather(*(one(c, uid, body, 0) for c, (uid, body) in zip(pool, bodies)))
        latencies.clear()
        warm_errors = list(errors)
        errors.clear()

        cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
        start = clock()
        deadline = start + duration

        async def worker(client: httpx.AsyncClient, uid: str, body: bytes) -> None:
            n = 0
            while n < max_per_client and clock() < deadline:
                n += 1
                counts[0] += 1
                await one(client, uid, body, n)

        await asyncio.gather(*(worker(c, uid, body) for c, (uid, body) in zip(pool, bodies)))
        elapsed = clock() - start
        cpu1 = {name: cpu_seconds(pid) for name, pid in pids.items()}
        cpu = {name: (cpu1[name] - cpu0[name]) if cpu0[name] is not None
               and cpu1[name] is not None else None for name in pids}
    finally:
        for c in set(pool):
            await c.aclose()
    return {"requests": counts[0], "errors": errors, "warm_errors": warm_errors,
            "elapsed": elapsed, "latencies": latencies, "cpu": cpu}


def load(base: str, template: dict, clients: int, duration: float, max_per_client: int,
         shared_pool: bool = False, pids: dict[str, int] | None = None) -> dict:
    """Run the load; ``pids`` names server processes whose CPU time over the timed window is
    reported (CPU per request is steadier than latency on a small shared machine)."""
    return asyncio.run(_load(base, template, clients, duration, max_per_client, shared_pool,
                             pids or {}))


def reset_plugin(plugin_base: str) -> None:
    """The fake plugin records every request; drop the records between phases."""
    httpx.post(f"{plugin_base}/_reset", trust_env=False)


# --- main ----------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="interleaved samples per kind")
    parser.add_argument("--warmup", type=int, default=300, help="warm-up rounds")
    parser.add_argument("--clients", type=int, default=200, help="concurrent clients under load")
    parser.add_argument("--duration", type=float, default=10.0,
                        help="seconds of sustained load per target")
    parser.add_argument("--max-per-client", type=int, default=100_000,
                        help="upper bound on requests per load client")
    parser.add_argument("--shared-pool", action="store_true",
                        help="load clients share ONE httpx.AsyncClient (one pool of --clients "
                        "connections) instead of one AsyncClient each")
    parser.add_argument("--skip-load", action="store_true", help="latency measurements only")
    args = parser.parse_args()

    command = "python bench/bench_api.py " + " ".join(sys.argv[1:])
    info = machine_info()
    template = json.loads(FIXTURE.read_text())["pod"]
    wall = time.perf_counter()

    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp_name:
        tmp = Path(tmp_name)
        plugin = start_fake_plugin(tmp)
        api = None
        try:
            host, port = plugin.base.rsplit(":", 1)
            api = start_api(tmp, {"SidecarURL": host, "SidecarPort": int(port)})
            print(f"plugin at {plugin.base}, interlink-api at {api.base}", file=sys.stderr)

            t = time.perf_counter()
            running = status_body(make_pod(template, str(uuid.uuid4()), "Running"))
            fw = framework(args.n * 10, args.warmup * 10, running)
            print(f"framework phase: {time.perf_counter() - t:.1f} s", file=sys.stderr)

            t = time.perf_counter()
            lat = latency(api.base, plugin.base, template, args.n, args.warmup)
            print(f"latency phase: {time.perf_counter() - t:.1f} s", file=sys.stderr)
            reset_plugin(plugin.base)

            base_load = api_load = None
            if not args.skip_load:
                t = time.perf_counter()
                pids = {"plugin": plugin.popen.pid, "api": api.popen.pid}
                base_load = load(plugin.base, template, args.clients, args.duration,
                                 args.max_per_client, args.shared_pool, pids)
                reset_plugin(plugin.base)
                api_load = load(api.base, template, args.clients, args.duration,
                                args.max_per_client, args.shared_pool, pids)
                print(f"load phase: {time.perf_counter() - t:.1f} s", file=sys.stderr)
                reset_plugin(plugin.base)
        finally:
            if api is not None:
                api_rc = api.stop()
                # uvicorn re-raises the SIGTERM it handled once it has shut down cleanly.
                if api_rc not in (0, -signal.SIGTERM, None):
                    print(f"interlink-api exited with {api_rc}:\n{api.output()[-2000:]}",
                          file=sys.stderr)
            plugin.stop()

    times = lat["times"]
    med = {k: statistics.median(v) for k, v in times.items()}
    added = med["api"] - med["direct"]
    added_paired = statistics.median(lat["paired"])
    n = args.n

    def load_rows(res: dict | None) -> list[str]:
        if res is None:
            return ["skipped"] * 5
        lats = res["latencies"]
        rate = res["requests"] / res["elapsed"]
        cpu = []
        for name in ("api", "plugin"):
            sec = res["cpu"].get(name)
            if sec is not None and res["requests"]:
                cpu.append(f"{name} {sec / res['requests'] * 1000:.2f}")
        return [f"{res['requests']} in {res['elapsed']:.1f} s",
                f"{len(res['errors'])}" + (f" (+{len(res['warm_errors'])} while connecting)"
                                           if res["warm_errors"] else ""),
                f"{rate:.0f} req/s",
                f"{ms(statistics.median(lats)) if lats else '-'} / "
                f"{ms(pct(lats, 99)) if lats else '-'}",
                ", ".join(cpu) + " ms" if cpu else "-"]

    b, a = load_rows(base_load), load_rows(api_load)
    fw_med = {k: statistics.median(v) for k, v in fw["times"].items()}
    fw_added = fw_med["fastapi"] - fw_med["starlette"]
    fw_paired = statistics.median(fw["paired"])
    fw_ok = "met" if max(fw_added, fw_paired) <= TARGET_FRAMEWORK_US / 1e6 else "MISSED"
    fw_n = len(fw["paired"])
    ok = "met" if added <= TARGET_ADDED_MS / 1000 else "MISSED"
    ok_paired = "met" if added_paired <= TARGET_ADDED_MS / 1000 else "MISSED"
    load_name = (f"load: {args.clients} clients x {args.duration:g} s"
                 + (" (one shared pool)" if args.shared_pool else ""))
    rows = [
        (f"/status 1 Running pod, sequential, median (n={n})", ms(med["direct"]), ms(med["api"]),
         ""),
        ("/status 1 Running pod, p90", ms(pct(times["direct"], 90)), ms(pct(times["api"], 90)),
         ""),
        ("/status 1 Running pod, p99", ms(pct(times["direct"], 99)), ms(pct(times["api"], 99)),
         ""),
        ("added latency: median(api) - median(direct)", "-", ms(added),
         f"<= {TARGET_ADDED_MS:g} ms ({ok})"),
        ("added latency: median of paired (api - direct)", "-", ms(added_paired),
         f"<= {TARGET_ADDED_MS:g} ms ({ok_paired})"),
        ("/status 1 Succeeded pod from cache (no plugin call), median / p99", "-",
         f"{ms(med['cached'])} / {ms(pct(times['cached'], 99))}", ""),
        ("cache hit vs. direct plugin call, median of paired (cached - direct)", "-",
         ms(statistics.median(lat["paired_cached"])), ""),
        (f"{load_name}: requests", b[0], a[0], ""),
        ("load: errors (non-200, wrong body, exception)", b[1], a[1], "0"),
        ("load: throughput", b[2], a[2], ""),
        ("load: latency median / p99", b[3], a[3], ""),
        ("load: server CPU per request (user+sys)", b[4], a[4], ""),
        (f"framework, in-process ASGI /status, median (n={fw_n}): plain Starlette (baseline "
         "column) vs. FastAPI as served",
         us(fw_med["starlette"]), us(fw_med["fastapi"]), ""),
        ("framework cost: median(FastAPI) - median(Starlette) / median of paired", "-",
         f"{us(fw_added)} / {us(fw_paired)}", f"<= {TARGET_FRAMEWORK_US:g} µs ({fw_ok})"),
    ]
    print()
    print(f"Command: `{command.strip()}` (from the repository root)")
    print()
    print(info)
    print(f"- total wall time: {time.perf_counter() - wall:.0f} s")
    print()
    print("| measurement | baseline (direct to plugin) | through interlink-api | target |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    errors = 0
    for name, res in (("direct", base_load), ("api", api_load)):
        if res and res["errors"]:
            errors += len(res["errors"])
            print(f"\n{name}: first errors: {res['errors'][:3]}")
    sys.stdout.flush()
    return 1 if added > TARGET_ADDED_MS / 1000 or errors or fw_ok != "met" else 0


if __name__ == "__main__":
    sys.exit(main())
