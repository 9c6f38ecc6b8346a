"""Benchmark of warm OIDC bearer validation (not a test): ``python bench/bench_auth.py``.

Starts the local test issuer, warms an OIDCValidator (JWKS fetched once), then times
``validate()`` per call for RS256 and ES256 tokens, next to the bare ``joserfc.jwt.decode`` of the
same token with a pre-imported public key: the difference is what our parsing, key lookup and
claim checks cost on top of the signature check.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from joserfc import jwt  # noqa: E402
from joserfc.jwk import import_key  # noqa: E402
from oidc_issuer import start_issuer  # noqa: E402

from interlink_api.auth import OIDCValidator  # noqa: E402
from interlink_common.config import OIDCConfig  # noqa: E402

TARGET_US = 300.0


def _stats(samples_ns: list[int]) -> tuple[float, float]:
    ordered = sorted(samples_ns)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered) / 1000, p99 / 1000


async def _time_async(fn: Callable[[], Awaitable[object]], n: int) -> list[int]:
    out: list[int] = []
    clock = time.perf_counter_ns
    for _ in range(n):
        t0 = clock()
        await fn()
        out.append(clock() - t0)
    return out


def _time_sync(fn: Callable[[], object], n: int) -> list[int]:
    out: list[int] = []
    clock = time.perf_counter_ns
    for _ in range(n):
        t0 = clock()
        fn()
        out.append(clock() - t0)
    return out


async def main(n: int) -> None:
    issuer = start_issuer()
    rows: list[tuple[str, float, float, str]] = []
    try:
        cfg = OIDCConfig(Issuer=issuer.url, Audience=["users"], RequiredGroup="users")
        validator = OIDCValidator(cfg)
        await validator.start()
        jwks = {k["kid"]: k for k in issuer.jwks()["keys"]}
        for alg, kid in (("RS256", issuer.rsa_kid), ("ES256", issuer.ec_kid)):
            # Long-lived so a slow run cannot make it expire half way.
            token = issuer.token(alg=alg, groups=["/users"], exp=int(time.time()) + 3600)
            header = f"Bearer {token}"
            public = import_key(jwks[kid])
            await validator.validate(header)  # warm: keys are cached from here on
            jwt.decode(token, public, algorithms=[alg])

            def decode(token: str = token, public: object = public, alg: str = alg) -> object:
                return jwt.decode(token, public, algorithms=[alg])  # type: ignore[arg-type]

            async def validate(header: str = header) -> object:
                return await validator.validate(header)

            _time_sync(decode, n // 10)
            await _time_async(validate, n // 10)
            med, p99 = _stats(_time_sync(decode, n))
            rows.append((f"joserfc.jwt.decode {alg} (baseline, signature only)", med, p99, "-"))
            med, p99 = _stats(await _time_async(validate, n))
            rows.append((f"OIDCValidator.validate {alg} (warm)", med, p99,
                         f"< {TARGET_US:.0f} µs"))
        fetches = issuer.jwks_fetches
        await validator.aclose()
    finally:
        issuer.stop()

    print(f"{n} calls each, Python {sys.version.split()[0]}, JWKS fetches during run: {fetches}\n")
    print("| operation | median µs | p99 µs | target |")
    print("|---|---:|---:|---|")
    for name, med, p99, target in rows:
        print(f"| {name} | {med:.1f} | {p99:.1f} | {target} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=5000, help="calls per operation")
    asyncio.run(main(parser.parse_args().n))
