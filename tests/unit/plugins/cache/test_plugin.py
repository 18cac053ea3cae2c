"""The cache plugin in process, on the in-memory backend: key composition and phases."""

from __future__ import annotations

from typing import Any

from controlplane.build import new_runtime
from controlplane.config.loader import load_config_text
from hotpath.context import Identity, RequestContext
from hotpath.plugin import LocalResponse, PluginSetup, ResponseHead, RouteInfo
from plugins.cache import CachePlugin
from plugins.cache.config import CacheConfig, CacheSettings
from tests.support.requests import make_ctx

CONFIG = """
services: {backend: {urls: ["http://127.0.0.1:9"]}}
routes: [{name: r, path: /r, service: backend}]
"""


def plugin(**cfg: Any) -> CachePlugin:
    runtime = new_runtime(load_config_text(CONFIG, "t.yaml", environ={}))
    route = RouteInfo(name="r", path="/r", service="backend", methods=())
    return CachePlugin(CacheConfig(**cfg), PluginSetup(route, CacheSettings(), runtime))


def ctx(path: str = "/r/a", method: str = "GET", query: bytes = b"", headers: list[tuple[bytes, bytes]] | None = None,
        subject: str | None = None) -> RequestContext:
    c = make_ctx(method, path, query=query, headers=headers)
    if subject is not None:
        c.identity = Identity(subject, "free")
    return c


async def fill(p: CachePlugin, c: RequestContext, body: bytes = b"hello", status: int = 200,
               headers: list[tuple[bytes, bytes]] | None = None, complete: bool = True) -> None:
    assert await p.on_request(c) is None
    head = ResponseHead(status, [(b"content-type", b"text/plain"), *(headers or []), *c.response_headers])
    tap = await p.on_response(c, head)
    if tap is not None:
        tap.feed(body)
        tap.finish(complete)
    p.on_log(c)


async def lookup(p: CachePlugin, c: RequestContext) -> LocalResponse | None:
    return await p.on_request(c)


async def test_hit_after_miss_with_headers() -> None:
    p = plugin()
    first = ctx()
    await fill(p, first)
    assert (b"x-cache", b"MISS") in first.response_headers
    hit = await lookup(p, ctx())
    assert hit is not None and hit.body == b"hello" and hit.status == 200
    names = [k for k, _ in hit.headers]
    assert (b"x-cache", b"HIT") in hit.headers and b"age" in names
    assert names.count(b"x-cache") == 1  # the MISS of the first request was not stored


async def test_identity_is_part_of_the_key_unless_shared() -> None:
    p = plugin()
    await fill(p, ctx(subject="alice"))
    assert await lookup(p, ctx(subject="alice")) is not None
    assert await lookup(p, ctx(subject="bob")) is None
    assert await lookup(p, ctx()) is None
    shared = plugin(shared=True)
    await fill(shared, ctx(subject="alice"))
    assert await lookup(shared, ctx(subject="bob")) is not None


async def test_authorization_without_identity_bypasses() -> None:
    p = plugin()
    c = ctx(headers=[(b"authorization", b"Bearer x")])
    await fill(p, c)
    assert c.outcome("cache") == "bypass"
    assert await lookup(p, ctx()) is None


async def test_head_reads_get_entries_but_never_stores() -> None:
    p = plugin()
    await fill(p, ctx(method="HEAD"), body=b"")
    assert await lookup(p, ctx()) is None
    await fill(p, ctx())
    assert await lookup(p, ctx(method="HEAD")) is not None


async def test_truncated_and_oversized_bodies_are_not_stored() -> None:
    p = plugin(max_entry_bytes=4)
    await fill(p, ctx("/r/t"), body=b"abc", complete=False)
    assert await lookup(p, ctx("/r/t")) is None
    await fill(p, ctx("/r/big"), body=b"abcdef")
    assert await lookup(p, ctx("/r/big")) is None


async def test_uncacheable_response_leaves_a_pass_marker() -> None:
    p = plugin(pass_ttl=30)
    await fill(p, ctx("/r/p"), headers=[(b"cache-control", b"no-store")])
    c = ctx("/r/p")
    assert await lookup(p, c) is None
    assert c.outcome("cache") == "bypass"


async def test_followers_get_the_leaders_entry() -> None:
    import asyncio

    p = plugin()
    leader = ctx("/r/f")
    assert await p.on_request(leader) is None
    follower = asyncio.ensure_future(p.on_request(ctx("/r/f")))
    await asyncio.sleep(0)
    head = ResponseHead(200, [(b"content-type", b"text/plain")])
    tap = await p.on_response(leader, head)
    assert tap is not None
    tap.feed(b"led")
    tap.finish(True)
    got = await follower
    assert got is not None and got.body == b"led"


async def test_a_leader_that_fails_releases_its_followers() -> None:
    import asyncio

    p = plugin()
    leader = ctx("/r/e")
    assert await p.on_request(leader) is None
    follower_ctx = ctx("/r/e")
    follower = asyncio.ensure_future(p.on_request(follower_ctx))
    await asyncio.sleep(0)
    p.on_log(leader)  # the upstream failed before any response
    assert await follower is None
    assert follower_ctx.outcome("cache") == "miss"


def test_stored_headers_drop_what_the_gateway_added_once_per_addition() -> None:
    from plugins.cache.plugin import _upstream_headers

    upstream = [(b"content-type", b"text/plain"), (b"vary", b"origin"), (b"x-ratelimit-remaining", b"9")]
    added = ((b"vary", b"origin"), (b"x-ratelimit-remaining", b"9"), (b"x-cache", b"MISS"))
    # As _relay builds it: the upstream's headers, the request id, then what plugins added.
    head = [*upstream, (b"x-request-id", b"abc"), *added]
    kept = _upstream_headers(head, added)
    # The upstream's own Vary and rate-limit header stay: only the gateway's copies go.
    assert kept == tuple(upstream)
    assert _upstream_headers(head, ()) == (*upstream, (b"vary", b"origin"), (b"x-ratelimit-remaining", b"9"))
    # Equal tuples that are distinct objects count as the same header (no identity test).
    assert _upstream_headers([(b"a", bytes([49]))], ((b"a", b"1"),)) == ()
