"""JwksSource and Provider against a real JWKS HTTP server: rotation, cooldown, failures."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import REGISTRY

from plugins.auth.config import ProviderConfig
from plugins.auth.errors import InvalidToken, KeysUnavailable, Reason
from plugins.auth.provider import Provider
from tests.support.jwks_server import JwksServer, SigningKey
from tests.unit.plugins.auth.conftest import FakeClock, claims


@pytest.fixture
def server() -> Iterator[JwksServer]:
    srv = JwksServer([SigningKey("EC", kid="first")])
    yield srv
    srv.stop()


def fetches(provider: str, result: str) -> float:
    return REGISTRY.get_sample_value("gatehouse_jwks_fetches_total", {"provider": provider, "result": result}) or 0.0


def make(server: JwksServer, mono: FakeClock, wall: FakeClock, **overrides: Any) -> Provider:
    fields: dict[str, Any] = {
        "algorithms": ("ES256", "RS256"),
        "jwks_url": server.url,
        "jwks_refresh_interval": 3600.0,
        "jwks_unknown_kid_cooldown": 30.0,
        "jwks_timeout": 2.0,
        "issuer": "https://idp.test",
        "audience": "api",
    }
    fields.update(overrides)
    return Provider(f"p-{uuid.uuid4().hex[:8]}", ProviderConfig(**fields), clock=wall, monotonic=mono, environ={})


async def started(provider: Provider) -> Provider:
    await provider.start()
    assert provider.jwks is not None
    assert await provider.jwks.refresh()  # joins the initial fetch of the refresh loop
    return provider


async def test_initial_fetch_loads_keys(server: JwksServer, clock: FakeClock) -> None:
    p = await started(make(server, FakeClock(0), clock))
    try:
        token = server.keys[0].sign(claims()).encode()
        assert p.verifier.verify(token).identity.subject == "alice"
        assert server.fetches == 1
        assert fetches(p.name, "ok") == 1
    finally:
        await p.stop()


async def test_rotation_is_picked_up_on_unknown_kid(server: JwksServer, clock: FakeClock) -> None:
    mono = FakeClock(0)
    p = await started(make(server, mono, clock))
    try:
        old = server.keys[0]
        old_token = old.sign(claims()).encode()
        p.verifier.verify(old_token)
        new = server.rotate("RSA")
        mono.now += 31  # past the cooldown since the last fetch
        v = await p.verify_after_refresh(new.sign(claims(sub="bob")).encode())
        assert v.identity.subject == "bob"
        # The old key was withdrawn: its cached token goes with it.
        with pytest.raises(InvalidToken) as info:
            await p.verify_after_refresh(old_token)
        assert info.value.reason is Reason.UNKNOWN_KID
    finally:
        await p.stop()


async def test_unknown_kid_storm_costs_one_fetch_per_cooldown(server: JwksServer, clock: FakeClock) -> None:
    mono = FakeClock(0)
    p = await started(make(server, mono, clock))
    key = server.keys[0]
    try:
        async def attempt() -> Reason:
            try:
                await p.verify_after_refresh(key.sign(claims(), kid=uuid.uuid4().hex).encode())
            except InvalidToken as exc:
                return exc.reason
            raise AssertionError("a random kid was accepted")

        # A concurrent burst of unknown kids shares a single fetch...
        reasons = await asyncio.gather(*(attempt() for _ in range(50)))
        assert set(reasons) == {Reason.UNKNOWN_KID}
        assert server.fetches == 2
        # ...and further ones inside the cooldown cause none.
        mono.now += 29
        reasons = await asyncio.gather(*(attempt() for _ in range(50)))
        assert set(reasons) == {Reason.UNKNOWN_KID}
        assert server.fetches == 2
        assert fetches(p.name, "cooldown") == 50
        # After the cooldown, one more.
        mono.now += 1
        await asyncio.gather(*(attempt() for _ in range(20)))
        assert server.fetches == 3
    finally:
        await p.stop()


@pytest.mark.parametrize("breakage", ["status", "oversized", "not_json", "no_usable_keys", "slow"])
async def test_failed_refresh_keeps_the_last_good_keys(server: JwksServer, clock: FakeClock, breakage: str) -> None:
    mono = FakeClock(0)
    p = await started(make(server, mono, clock, jwks_max_bytes=4096, jwks_timeout=0.5))
    assert p.jwks is not None
    token = server.keys[0].sign(claims()).encode()
    try:
        if breakage == "status":
            server.status = 503
        elif breakage == "oversized":
            server.raw = b'{"keys": [], "pad": "' + b"x" * 5000 + b'"}'
        elif breakage == "not_json":
            server.raw = b"<html>oops</html>"
        elif breakage == "no_usable_keys":
            server.raw = b'{"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "sym"}]}'
        else:
            server.delay = 1.5
        assert not await p.jwks.refresh()
        assert fetches(p.name, "error") == 1
        assert p.verifier.verify(token).identity.subject == "alice"
    finally:
        await p.stop()


async def test_no_keys_until_the_first_fetch_succeeds(server: JwksServer, clock: FakeClock) -> None:
    server.status = 500
    mono = FakeClock(0)
    p = make(server, mono, clock)
    await p.start()
    try:
        assert p.jwks is not None
        assert not await p.jwks.refresh()
        token = server.keys[0].sign(claims()).encode()
        with pytest.raises(KeysUnavailable):
            await p.verify_after_refresh(token)
        server.status = 200
        mono.now += 30
        assert (await p.verify_after_refresh(token)).identity.subject == "alice"
    finally:
        await p.stop()
