"""OIDCValidator against a real local issuer (tests/oidc_issuer.py) over real HTTP."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from interlink_api.auth import AuthError, OIDCValidator
from interlink_common.config import OIDCConfig

try:
    from tests.oidc_issuer import LocalIssuer, closed_port_url, start_issuer
except ModuleNotFoundError:  # tests/ is not a package: pytest put it on sys.path itself
    from oidc_issuer import LocalIssuer, closed_port_url, start_issuer  # type: ignore[no-redef]

WWW_AUTH_RE = re.compile(
    r'^Bearer realm="interlink"'
    r'(, error="(invalid_token|insufficient_scope)", error_description="[\x20-\x21\x23-\x5b\x5d-\x7e]+")?$')


class Clock:
    """A settable clock starting at real time, so issuer-minted exp/nbf stay meaningful."""

    def __init__(self) -> None:
        self.t = time.time()

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def issuer() -> Any:
    iss = start_issuer()
    yield iss
    iss.stop()


def make_cfg(issuer_url: str, **kw: Any) -> OIDCConfig:
    base: dict[str, Any] = {"Issuer": issuer_url, "Audience": ["users"], "LeewaySeconds": 30,
                            "HTTPTimeoutSeconds": 5}
    base.update(kw)
    return OIDCConfig(**base)


def run(cfg: OIDCConfig, body: Callable[[OIDCValidator], Awaitable[Any]], *,
        now: Callable[[], float] = time.time, start: bool = True) -> Any:
    async def main() -> Any:
        v = OIDCValidator(cfg, now=now)
        try:
            if start:
                await v.start()
            return await body(v)
        finally:
            await v.aclose()
    return asyncio.run(main())


def validate(cfg: OIDCConfig, token: str, **kw: Any) -> dict[str, Any]:
    return run(cfg, lambda v: v.validate(f"Bearer {token}"), **kw)


def expect_error(cfg: OIDCConfig, authorization: str | None, status: int, reason: str,
                 **kw: Any) -> AuthError:
    async def body(v: OIDCValidator) -> None:
        await v.validate(authorization)
    with pytest.raises(AuthError) as info:
        run(cfg, body, **kw)
    return check_error(info.value, authorization, status, reason)


def check_error(err: AuthError, authorization: str | None, status: int, reason: str) -> AuthError:
    assert (err.status, err.reason) == (status, reason), err.message
    header = err.www_authenticate()
    assert WWW_AUTH_RE.match(header), header
    if status == 403:
        assert 'error="insufficient_scope"' in header
    elif reason == "missing":
        assert header == 'Bearer realm="interlink"'
    else:
        assert 'error="invalid_token"' in header
    if authorization:
        token = authorization.split(" ", 1)[-1].strip()
        for part in [p for p in [token, *token.split(".")] if len(p) > 8]:
            assert part not in header
            assert part not in err.message
            assert part not in str(err)
    return err


# --- accepted tokens ----------------------------------------------------------------------

def test_valid_rs256(issuer: LocalIssuer) -> None:
    claims = validate(make_cfg(issuer.url), issuer.token(sub="alice"))
    assert claims["sub"] == "alice"
    assert claims["iss"] == issuer.url


def test_valid_es256(issuer: LocalIssuer) -> None:
    claims = validate(make_cfg(issuer.url), issuer.token(alg="ES256", sub="bob"))
    assert claims["sub"] == "bob"


def test_valid_ps256(issuer: LocalIssuer) -> None:
    claims = validate(make_cfg(issuer.url), issuer.token(alg="PS256", sub="carol"))
    assert claims["sub"] == "carol"


def test_valid_es384_with_p384_key(issuer: LocalIssuer) -> None:
    kid = issuer.add_key("EC", crv="P-384")
    claims = validate(make_cfg(issuer.url), issuer.token(key=issuer.key(kid), alg="ES384"))
    assert claims["aud"] == "users"


def test_token_without_kid_uses_matching_key_type(issuer: LocalIssuer) -> None:
    claims = validate(make_cfg(issuer.url), issuer.token(no_kid=True, sub="nokid"))
    assert claims["sub"] == "nokid"


def test_audience_as_list(issuer: LocalIssuer) -> None:
    claims = validate(make_cfg(issuer.url), issuer.token(aud=["other", "users"]))
    assert claims["aud"] == ["other", "users"]


def test_any_configured_audience_is_enough(issuer: LocalIssuer) -> None:
    cfg = make_cfg(issuer.url, Audience=["a", "users"])
    assert validate(cfg, issuer.token(aud="a"))["aud"] == "a"


def test_no_audience_configured_skips_the_check(issuer: LocalIssuer) -> None:
    cfg = make_cfg(issuer.url, Audience=[])
    assert validate(cfg, issuer.token(aud="anything"))["aud"] == "anything"


def test_expired_within_leeway_accepted(issuer: LocalIssuer) -> None:
    now = int(time.time())
    token = issuer.token(exp=now - 10, iat=now - 400, nbf=now - 400)
    assert validate(make_cfg(issuer.url, LeewaySeconds=30), token)["exp"] == now - 10


def test_scheme_is_case_insensitive(issuer: LocalIssuer) -> None:
    token = issuer.token()
    claims = run(make_cfg(issuer.url), lambda v: v.validate(f"bEaReR {token}"))
    assert claims["iss"] == issuer.url


# --- time claims --------------------------------------------------------------------------

def test_expired(issuer: LocalIssuer) -> None:
    now = int(time.time())
    token = issuer.token(exp=now - 100, iat=now - 400, nbf=now - 400)
    err = expect_error(make_cfg(issuer.url, LeewaySeconds=30), f"Bearer {token}", 401, "expired")
    assert "expired" in err.www_authenticate()


def test_expired_just_beyond_leeway(issuer: LocalIssuer) -> None:
    clock = Clock()
    token = issuer.token(exp=int(clock.t) + 60)
    cfg = make_cfg(issuer.url, LeewaySeconds=30)
    clock.advance(60 + 29)
    assert validate(cfg, token, now=clock)["sub"] == "test-user"
    clock.advance(2)
    expect_error(cfg, f"Bearer {token}", 401, "expired", now=clock)


def test_missing_exp_rejected(issuer: LocalIssuer) -> None:
    token = issuer.token(omit=["exp"])
    expect_error(make_cfg(issuer.url), f"Bearer {token}", 401, "malformed")


def test_not_yet_valid(issuer: LocalIssuer) -> None:
    now = int(time.time())
    token = issuer.token(nbf=now + 120, exp=now + 600)
    expect_error(make_cfg(issuer.url, LeewaySeconds=30), f"Bearer {token}", 401, "not_yet_valid")


def test_nbf_within_leeway_accepted(issuer: LocalIssuer) -> None:
    now = int(time.time())
    token = issuer.token(nbf=now + 10, exp=now + 600)
    assert validate(make_cfg(issuer.url, LeewaySeconds=30), token)["nbf"] == now + 10


def test_issued_in_the_future(issuer: LocalIssuer) -> None:
    now = int(time.time())
    token = issuer.token(iat=now + 300, nbf=now, exp=now + 600)
    expect_error(make_cfg(issuer.url), f"Bearer {token}", 401, "not_yet_valid")


# --- issuer and audience ------------------------------------------------------------------

def test_wrong_issuer(issuer: LocalIssuer) -> None:
    token = issuer.token(iss=issuer.url + "/other")
    expect_error(make_cfg(issuer.url), f"Bearer {token}", 401, "bad_issuer")


def test_issuer_trailing_slash_is_not_equal(issuer: LocalIssuer) -> None:
    token = issuer.token(iss=issuer.url + "/")
    expect_error(make_cfg(issuer.url), f"Bearer {token}", 401, "bad_issuer")


def test_wrong_audience(issuer: LocalIssuer) -> None:
    token = issuer.token(aud="someone-else")
    expect_error(make_cfg(issuer.url), f"Bearer {token}", 401, "bad_audience")


def test_wrong_audience_list(issuer: LocalIssuer) -> None:
    token = issuer.token(aud=["a", "b"])
    expect_error(make_cfg(issuer.url), f"Bearer {token}", 401, "bad_audience")


def test_missing_audience(issuer: LocalIssuer) -> None:
    token = issuer.token(omit=["aud"])
    expect_error(make_cfg(issuer.url), f"Bearer {token}", 401, "bad_audience")


# --- algorithms and signatures ------------------------------------------------------------

@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_alg_none(issuer: LocalIssuer, alg: str) -> None:
    token = issuer.none_token(alg=alg)
    expect_error(make_cfg(issuer.url), f"Bearer {token}", 401, "bad_algorithm")


def test_hs256_signed_with_public_key(issuer: LocalIssuer) -> None:
    token = issuer.hs256_public_key_token()
    expect_error(make_cfg(issuer.url), f"Bearer {token}", 401, "bad_algorithm")


def test_hmac_in_config_is_dropped(issuer: LocalIssuer) -> None:
    cfg = make_cfg(issuer.url, Algorithms=["HS256", "RS256", "none"])
    expect_error(cfg, f"Bearer {issuer.hs256_public_key_token()}", 401, "bad_algorithm")
    expect_error(cfg, f"Bearer {issuer.none_token()}", 401, "bad_algorithm")
    assert validate(cfg, issuer.token())["iss"] == issuer.url


def test_config_without_usable_algorithm_is_refused(issuer: LocalIssuer) -> None:
    with pytest.raises(ValueError):
        OIDCValidator(make_cfg(issuer.url, Algorithms=["HS256", "none"]))


def test_empty_issuer_is_refused() -> None:
    with pytest.raises(ValueError):
        OIDCValidator(OIDCConfig())


def test_alg_outside_allow_list(issuer: LocalIssuer) -> None:
    cfg = make_cfg(issuer.url, Algorithms=["RS256"])
    expect_error(cfg, f"Bearer {issuer.token(alg='ES256')}", 401, "bad_algorithm")


def test_rejected_alg_does_not_touch_the_issuer(issuer: LocalIssuer) -> None:
    async def body(v: OIDCValidator) -> None:
        with pytest.raises(AuthError) as info:
            await v.validate(f"Bearer {issuer.hs256_public_key_token()}")
        assert info.value.reason == "bad_algorithm"
    run(make_cfg(issuer.url), body, start=False)
    assert issuer.jwks_fetches == 0


def test_alg_family_must_match_key_type(issuer: LocalIssuer) -> None:
    # Signed with an EC key but naming the issuer's RSA kid.
    token = issuer.token(key=issuer.new_key("EC"), alg="ES256", kid=issuer.rsa_kid)
    expect_error(make_cfg(issuer.url), f"Bearer {token}", 401, "bad_algorithm")


def test_curve_must_match_alg(issuer: LocalIssuer) -> None:
    # ES384 header with the issuer's P-256 key id: the signature would be checked on the
    # wrong curve, so it is refused before that.
    p384 = issuer.new_key("EC", crv="P-384")
    token = issuer.token(key=p384, alg="ES384", kid=issuer.ec_kid)
    expect_error(make_cfg(issuer.url), f"Bearer {token}", 401, "bad_algorithm")


def test_known_kid_wrong_key_is_bad_signature(issuer: LocalIssuer) -> None:
    token = issuer.token(key=issuer.new_key("RSA"), kid=issuer.rsa_kid)
    expect_error(make_cfg(issuer.url), f"Bearer {token}", 401, "bad_signature")


def test_tampered_payload_is_bad_signature(issuer: LocalIssuer) -> None:
    h, _, s = issuer.token().split(".")
    other = issuer.token(sub="mallory").split(".")[1]
    expect_error(make_cfg(issuer.url), f"Bearer {h}.{other}.{s}", 401, "bad_signature")


def test_bad_signature_does_not_refetch(issuer: LocalIssuer) -> None:
    clock = Clock()
    token = issuer.token(key=issuer.new_key("RSA"), kid=issuer.rsa_kid)
    cfg = make_cfg(issuer.url, JWKSMinRefetchSeconds=0)
    expect_error(cfg, f"Bearer {token}", 401, "bad_signature", now=clock)
    assert issuer.jwks_fetches == 1


# --- malformed requests -------------------------------------------------------------------

@pytest.mark.parametrize("authorization", [None, "", "   ", "Bearer", "Bearer   "])
def test_missing(issuer: LocalIssuer, authorization: str | None) -> None:
    expect_error(make_cfg(issuer.url), authorization, 401, "missing")


def test_wrong_scheme(issuer: LocalIssuer) -> None:
    token = issuer.token()
    err = expect_error(make_cfg(issuer.url), f"Basic {token}", 401, "missing")
    assert "Bearer" in err.message


@pytest.mark.parametrize("token", [
    "garbage",
    "a.b",
    "a.b.c.d",
    "!!!.???.###",
    "eyJhbGciOiJSUzI1NiJ9.%%%.c2ln",
    "bm90IGpzb24.eyJ4IjoxfQ.c2ln",          # header is base64 of "not json"
    "WzFd.eyJ4IjoxfQ.c2ln",                 # header is [1]
    "eyJ0eXAiOiJKV1QifQ.eyJ4IjoxfQ.c2ln",  # header without alg
    "Bearer x y",
])
def test_garbage_token(issuer: LocalIssuer, token: str) -> None:
    expect_error(make_cfg(issuer.url), f"Bearer {token}", 401, "malformed")


def test_payload_not_json(issuer: LocalIssuer) -> None:
    from joserfc import jws
    key = issuer.key(issuer.rsa_kid)
    token = jws.serialize_compact({"alg": "RS256", "kid": issuer.rsa_kid}, b"not json", key)
    expect_error(make_cfg(issuer.url), f"Bearer {token}", 401, "malformed")


def test_oversized_token(issuer: LocalIssuer) -> None:
    token = issuer.token(blob="x" * 40_000)
    expect_error(make_cfg(issuer.url), f"Bearer {token}", 401, "malformed")


# --- groups -------------------------------------------------------------------------------

def test_missing_group_is_403(issuer: LocalIssuer) -> None:
    cfg = make_cfg(issuer.url, RequiredGroup="users")
    err = expect_error(cfg, f"Bearer {issuer.token(groups=['admins'])}", 403, "missing_group")
    assert "users" in err.message


def test_absent_groups_claim_is_403(issuer: LocalIssuer) -> None:
    cfg = make_cfg(issuer.url, RequiredGroup="users")
    expect_error(cfg, f"Bearer {issuer.token()}", 403, "missing_group")


def test_group_present(issuer: LocalIssuer) -> None:
    cfg = make_cfg(issuer.url, RequiredGroup="users")
    assert validate(cfg, issuer.token(groups=["admins", "users"]))["groups"][1] == "users"


def test_group_as_single_string(issuer: LocalIssuer) -> None:
    cfg = make_cfg(issuer.url, RequiredGroup="users")
    assert validate(cfg, issuer.token(groups="users"))["groups"] == "users"


def test_group_prefix_is_not_enough(issuer: LocalIssuer) -> None:
    cfg = make_cfg(issuer.url, RequiredGroup="users")
    expect_error(cfg, f"Bearer {issuer.token(groups=['/users/sub', 'users2'])}", 403,
                 "missing_group")


def test_wlcg_groups_flat_claim_with_slash(issuer: LocalIssuer) -> None:
    cfg = make_cfg(issuer.url, GroupsClaim="wlcg.groups", RequiredGroup="users")
    token = issuer.token({"wlcg.groups": ["/users", "/cms"]})
    assert validate(cfg, token)["wlcg.groups"] == ["/users", "/cms"]
    cfg_slash = make_cfg(issuer.url, GroupsClaim="wlcg.groups", RequiredGroup="/users")
    assert validate(cfg_slash, issuer.token({"wlcg.groups": ["users"]}))["sub"] == "test-user"
    expect_error(cfg, f"Bearer {issuer.token({'wlcg.groups': ['/cms']})}", 403, "missing_group")


def test_groups_nested_dotted_path(issuer: LocalIssuer) -> None:
    cfg = make_cfg(issuer.url, GroupsClaim="wlcg.groups", RequiredGroup="users")
    assert validate(cfg, issuer.token(wlcg={"groups": ["/users"]}))["wlcg"]["groups"] == ["/users"]
    expect_error(cfg, f"Bearer {issuer.token(groups=['/users'])}", 403, "missing_group")


# --- JWKS cache, rotation, rate limit -----------------------------------------------------

def test_warm_validations_do_not_refetch(issuer: LocalIssuer) -> None:
    async def body(v: OIDCValidator) -> None:
        for _ in range(20):
            await v.validate(f"Bearer {issuer.token()}")
            await v.validate(f"Bearer {issuer.token(alg='ES256')}")
    run(make_cfg(issuer.url, JWKSMinRefetchSeconds=0), body)
    assert (issuer.discovery_fetches, issuer.jwks_fetches) == (1, 1)


def test_unknown_kid_then_rotation_accepted_after_one_refetch(issuer: LocalIssuer) -> None:
    clock = Clock()
    cfg = make_cfg(issuer.url, JWKSMinRefetchSeconds=60)

    async def body(v: OIDCValidator) -> None:
        assert issuer.jwks_fetches == 1
        new_kid = issuer.rotate()
        clock.advance(61)
        claims = await v.validate(f"Bearer {issuer.token(key=issuer.key(new_kid))}")
        assert claims["sub"] == "test-user"
        assert issuer.jwks_fetches == 2
        # Old and new keys both work from the cache now.
        await v.validate(f"Bearer {issuer.token()}")
        await v.validate(f"Bearer {issuer.token(key=issuer.key(new_kid))}")
        assert issuer.jwks_fetches == 2
        assert issuer.discovery_fetches == 1
    run(cfg, body, now=clock)


def test_rotation_within_min_refetch_waits(issuer: LocalIssuer) -> None:
    clock = Clock()
    cfg = make_cfg(issuer.url, JWKSMinRefetchSeconds=60)

    async def body(v: OIDCValidator) -> None:
        new_kid = issuer.rotate()
        token = issuer.token(key=issuer.key(new_kid))
        clock.advance(10)
        with pytest.raises(AuthError) as info:
            await v.validate(f"Bearer {token}")
        check_error(info.value, f"Bearer {token}", 401, "unknown_key")
        assert issuer.jwks_fetches == 1
        clock.advance(51)
        assert (await v.validate(f"Bearer {token}"))["sub"] == "test-user"
        assert issuer.jwks_fetches == 2
    run(cfg, body, now=clock)


def test_unknown_kid_refetch_is_rate_limited(issuer: LocalIssuer) -> None:
    clock = Clock()
    cfg = make_cfg(issuer.url, JWKSMinRefetchSeconds=30)
    stranger = issuer.new_key("RSA")

    async def body(v: OIDCValidator) -> None:
        assert issuer.jwks_fetches == 1
        clock.advance(31)

        async def attempt(kid: str) -> None:
            token = issuer.token(key=stranger, kid=kid)
            with pytest.raises(AuthError) as info:
                await v.validate(f"Bearer {token}")
            check_error(info.value, f"Bearer {token}", 401, "unknown_key")

        await attempt("unknown-1")
        assert issuer.jwks_fetches == 2  # one refetch for the first unknown kid
        for i in range(10):
            clock.advance(2)
            await attempt(f"unknown-{i + 2}")
        assert issuer.jwks_fetches == 2  # none within the next 30 s
        clock.advance(30)
        await attempt("unknown-late")
        assert issuer.jwks_fetches == 3
    run(cfg, body, now=clock)


@pytest.mark.parametrize("min_refetch", [0, 30])
def test_concurrent_unknown_kid_share_one_refetch(issuer: LocalIssuer, min_refetch: int) -> None:
    # With no rate limit at all (0) only the lock keeps the waiters from fetching again.
    clock = Clock()
    cfg = make_cfg(issuer.url, JWKSMinRefetchSeconds=min_refetch)

    async def body(v: OIDCValidator) -> None:
        new_kid = issuer.rotate("EC")
        clock.advance(31)
        tokens = [issuer.token(key=issuer.key(new_kid), sub=f"u{i}") for i in range(10)]
        results = await asyncio.gather(*(v.validate(f"Bearer {t}") for t in tokens))
        assert [r["sub"] for r in results] == [f"u{i}" for i in range(10)]
        assert issuer.jwks_fetches == 2
    run(cfg, body, now=clock)


def test_cache_expiry_refreshes(issuer: LocalIssuer) -> None:
    clock = Clock()
    cfg = make_cfg(issuer.url, JWKSCacheSeconds=100, JWKSMinRefetchSeconds=10)

    async def body(v: OIDCValidator) -> None:
        await v.validate(f"Bearer {issuer.token()}")
        clock.advance(50)
        await v.validate(f"Bearer {issuer.token()}")
        assert issuer.jwks_fetches == 1
        clock.advance(51)
        await v.validate(f"Bearer {issuer.token()}")
        assert issuer.jwks_fetches == 2
    run(cfg, body, now=clock)


def test_stale_cache_survives_issuer_outage(issuer: LocalIssuer) -> None:
    clock = Clock()
    cfg = make_cfg(issuer.url, JWKSCacheSeconds=100, JWKSMinRefetchSeconds=10)

    async def body(v: OIDCValidator) -> None:
        token = issuer.token()
        issuer.fail_status = 503
        clock.advance(101)
        assert (await v.validate(f"Bearer {token}"))["sub"] == "test-user"
        assert issuer.jwks_fetches == 2  # it did try
    run(cfg, body, now=clock)


# --- issuer availability ------------------------------------------------------------------

def test_issuer_down_at_start_then_up() -> None:
    iss = start_issuer(listening=False)
    try:
        token = iss.token()

        async def body(v: OIDCValidator) -> None:
            await v.start()  # connection refused: warns, does not raise
            assert iss.jwks_fetches == 0
            iss.listen()
            claims = await v.validate(f"Bearer {token}")
            assert claims["iss"] == iss.url
            assert (iss.discovery_fetches, iss.jwks_fetches) == (1, 1)
        run(make_cfg(iss.url, JWKSMinRefetchSeconds=30), body, start=False)
    finally:
        iss.stop()


def test_issuer_unreachable_no_keys(issuer: LocalIssuer, caplog: pytest.LogCaptureFixture) -> None:
    url = closed_port_url()
    token = issuer.token(iss=url)
    caplog.set_level(logging.DEBUG)
    err = expect_error(make_cfg(url), f"Bearer {token}", 401, "jwks_unavailable")
    assert url in err.message
    assert "reach" in err.message
    assert token not in caplog.text
    assert token.split(".")[2] not in caplog.text


def test_issuer_unreachable_is_not_retried_on_every_request() -> None:
    url = closed_port_url()
    clock = Clock()
    cfg = make_cfg(url, JWKSMinRefetchSeconds=30)
    calls = 0

    async def body(v: OIDCValidator) -> None:
        nonlocal calls
        original = v._fetch_keys

        async def counting() -> None:
            nonlocal calls
            calls += 1
            await original()
        v._fetch_keys = counting  # type: ignore[method-assign]
        for _ in range(5):
            with pytest.raises(AuthError) as info:
                await v.validate("Bearer eyJhbGciOiJSUzI1NiJ9.eyJ4IjoxfQ.c2ln")
            assert info.value.reason == "jwks_unavailable"
        assert calls == 1
        clock.advance(31)
        with pytest.raises(AuthError):
            await v.validate("Bearer eyJhbGciOiJSUzI1NiJ9.eyJ4IjoxfQ.c2ln")
        assert calls == 2
    run(cfg, body, now=clock)


def test_issuer_answers_errors(issuer: LocalIssuer) -> None:
    issuer.fail_status = 500
    expect_error(make_cfg(issuer.url), f"Bearer {issuer.token()}", 401, "jwks_unavailable")


def test_tls_issuer_needs_ca_file() -> None:
    iss = start_issuer(tls=True)
    try:
        assert iss.url.startswith("https://") and iss.ca_file
        token = iss.token()
        assert validate(make_cfg(iss.url, CAFile=iss.ca_file), token)["iss"] == iss.url
        # Without the CA the self-signed certificate is not trusted: no keys, no access.
        expect_error(make_cfg(iss.url), f"Bearer {token}", 401, "jwks_unavailable")
    finally:
        iss.stop()


def test_discovery_url_override(issuer: LocalIssuer) -> None:
    # Issuer name differs from where discovery is reached (an internal address).
    public = "https://iam.example.org/"
    cfg = make_cfg(public, DiscoveryURL=issuer.url)
    assert validate(cfg, issuer.token(iss=public))["iss"] == public
    cfg_full = make_cfg(public, DiscoveryURL=issuer.url + "/.well-known/openid-configuration")
    assert validate(cfg_full, issuer.token(iss=public))["iss"] == public


def test_jwks_private_members_and_foreign_keys_ignored(issuer: LocalIssuer) -> None:
    # An "enc" key and an oct key in the JWKS must not be usable for signatures; a key published
    # with its private members by mistake is still usable as a public key.
    enc_kid = issuer.add_key("RSA")
    original = issuer.jwks

    def jwks() -> dict[str, Any]:
        doc = original()
        for k in doc["keys"]:
            if k["kid"] == enc_kid:
                k["use"] = "enc"
            if k["kid"] == issuer.rsa_kid:
                k.update(issuer.key(issuer.rsa_kid).as_dict(private=True))
        doc["keys"].append({"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"})
        return doc
    issuer.jwks = jwks  # type: ignore[method-assign]
    cfg = make_cfg(issuer.url, JWKSMinRefetchSeconds=60)
    expect_error(cfg, f"Bearer {issuer.token(key=issuer.key(enc_kid))}", 401, "unknown_key")
    assert validate(cfg, issuer.token())["sub"] == "test-user"


def test_www_authenticate_sanitises_message() -> None:
    err = AuthError(401, "bad_issuer", 'odd "quoted" \\ text\n')
    assert WWW_AUTH_RE.match(err.www_authenticate())
