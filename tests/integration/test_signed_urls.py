"""Signed URLs in 2-worker gateways: an issued URL opens the file (a job link from a template
route opens that job's file only); a changed path, query
parameter or expiry, an expired URL, a retired key and a signature in other letter case
get 403; after a key rotation, URLs signed with the previous key keep working until that
key is retired. URLs come from an issuing route, from ``gatehouse sign`` and from the
admin API."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import yaml

from tests.conftest import GatewayFactory
from tests.support.processes import NATIVE_ENV, REPO, Gateway, Upstream, free_port

pytestmark = pytest.mark.integration

JWT_SECRET = "signed-url-tests-jwt-secret-0123456789"
KEY_1 = "first-url-signing-key-0123456789abcdef"
KEY_2 = "second-url-signing-key-fedcba9876543210"
ADMIN_TOKEN = "adm1n-t0ken-for-signed-url-tests-77"
ENV = {"URL_KEY_1": KEY_1, "URL_KEY_2": KEY_2}


def config(upstream: Upstream, keys: list[dict[str, Any]], admin_port: int | None = None) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        # The loopback peer is a trusted proxy, so a test can send requests from other addresses.
        "server": {"trusted_proxies": ["127.0.0.1/32"]},
        "services": {"storage": {"urls": [upstream.url], "timeouts": {"connect": 1, "read": 5, "total": 10}}},
        "plugins": {
            "auth": {"providers": {"hs": {"algorithms": ["HS256"], "secret": JWT_SECRET}}},
            "signed_url": {"keys": keys, "leeway": 0},
        },
        "routes": [
            {"name": "files", "path": "/files", "service": "storage", "plugins": {"signed_url": {}}},
            {"name": "near", "path": "/near", "service": "storage", "plugins": {"signed_url": {"bind": "ip"}}},
            {"name": "job-link", "path": "/api/v1/jobs/{id}/download", "match": "exact", "service": "storage",
             "methods": ["GET"], "plugins": {"auth": {}, "signed_url": {"mode": "issue",
                                                                        "target": "/files/jobs/{id}/output.mp4"}}},
            {"name": "report-link", "path": "/api/v1/reports/latest/download", "match": "exact",
             "service": "storage", "methods": ["GET"],
             "plugins": {"auth": {}, "signed_url": {"mode": "issue", "target": "/files/reports/latest.pdf"}}},
            {"name": "short-link", "path": "/api/v1/short/download", "match": "exact", "service": "storage",
             "plugins": {"auth": {}, "signed_url": {"mode": "issue", "target": "/files/short.txt", "ttl": 1}}},
            {"name": "near-link", "path": "/api/v1/near/download", "match": "exact", "service": "storage",
             "plugins": {"auth": {}, "signed_url": {"mode": "issue", "target": "/near/x.bin", "bind": "ip"}}},
        ],
    }
    if admin_port is not None:
        cfg["admin"] = {"port": admin_port}
    return cfg


ROTATION_START = [{"id": "k1", "secret": "${URL_KEY_1}"}]
ROTATION_MIDDLE = [{"id": "k2", "secret": "${URL_KEY_2}"}, {"id": "k1", "secret": "${URL_KEY_1}", "verify_only": True}]
ROTATION_END = [{"id": "k2", "secret": "${URL_KEY_2}"}]


@pytest.fixture(scope="module")
def admin_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def gw(upstream: Upstream, gateway_factory: GatewayFactory, admin_port: int) -> Gateway:
    return gateway_factory(config(upstream, ROTATION_MIDDLE, admin_port), workers=2,
                           env={**ENV, "GATEHOUSE_ADMIN_TOKEN": ADMIN_TOKEN})


def issue(gw: Gateway, path: str = "/api/v1/reports/latest/download", **headers: str) -> dict[str, Any]:
    token = jwt.encode({"sub": "alice", "exp": int(time.time()) + 600}, JWT_SECRET, algorithm="HS256")
    r = httpx.get(f"{gw.url}{path}", headers={"authorization": f"Bearer {token}", **headers}, timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    answer: dict[str, Any] = r.json()
    return answer


def opens(gw: Gateway, url: str, **headers: str) -> httpx.Response:
    return httpx.get(f"{gw.url}{url}", headers=headers, timeout=10)


def assert_refused(r: httpx.Response) -> None:
    assert r.status_code == 403, r.text
    assert r.json()["error"] == {"code": "FORBIDDEN", "message": "the URL signature is invalid or expired"}


def test_a_job_link_is_signed_for_its_own_job(gw: Gateway) -> None:
    answer = issue(gw, "/api/v1/jobs/42/download")
    assert answer["url"].startswith("/files/jobs/42/output.mp4?exp=")
    assert answer["expires_at"] > time.time() + 3500
    r = opens(gw, answer["url"])
    assert r.status_code == 200 and r.json()["path"] == "/files/jobs/42/output.mp4"
    other = issue(gw, "/api/v1/jobs/43/download")["url"]
    assert opens(gw, other).status_code == 200
    # One job's signature never opens another job's file.
    assert_refused(opens(gw, answer["url"].replace("/jobs/42/", "/jobs/43/")))


def test_an_issued_url_opens_the_file(gw: Gateway) -> None:
    answer = issue(gw)
    assert answer["url"].startswith("/files/reports/latest.pdf?exp=") and "kid=k2" in answer["url"]
    assert answer["expires_at"] > time.time() + 3500 and answer["method"] == "GET"
    for _ in range(6):  # both workers
        r = opens(gw, answer["url"])
        assert r.status_code == 200, r.text
        seen = r.json()
        assert seen["path"] == "/files/reports/latest.pdf"
        assert seen["query"] == ""  # exp, kid and sig stay at the gateway
    assert httpx.head(f"{gw.url}{answer['url']}", timeout=10).status_code == 200
    anonymous = httpx.get(f"{gw.url}/api/v1/reports/latest/download", timeout=10)
    assert anonymous.status_code == 401


def test_every_change_gets_403(gw: Gateway) -> None:
    url = issue(gw)["url"]
    path, _, query = url.partition("?")
    params = dict(p.split("=", 1) for p in query.split("&"))
    sig, exp = params["sig"], params["exp"]
    letter = next(i for i, c in enumerate(sig) if c.isalpha())
    for changed in (
        url.replace("/files/reports/latest.pdf", "/files/reports/other.pdf"),   # path
        url.replace("latest.pdf", "LATEST.pdf"),
        f"{path}?download=1&{query}",                                          # a parameter added
        url.replace(f"exp={exp}", f"exp={int(exp) + 3600}"),                   # expiry
        url.replace(f"sig={sig}", f"sig={sig[:letter]}{sig[letter].swapcase()}{sig[letter + 1:]}"),  # case
        url.replace(f"sig={sig}", f"sig={sig.upper()}"),
        url.replace("&kid=k2", ""),
        path,
    ):
        assert_refused(opens(gw, changed))
    assert opens(gw, url).status_code == 200
    # A changed query parameter of a URL signed with one.
    signed = sign_cli(gw, "/files/reports/latest.pdf?download=1", "--ttl", "600")
    assert opens(gw, signed).status_code == 200
    assert_refused(opens(gw, signed.replace("download=1", "download=2")))


def test_an_expired_url_gets_403(gw: Gateway) -> None:
    url = issue(gw, "/api/v1/short/download")["url"]
    deadline = time.monotonic() + 15
    while opens(gw, url).status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert_refused(opens(gw, url))


def test_a_url_bound_to_the_client_address(gw: Gateway) -> None:
    url = issue(gw, "/api/v1/near/download", **{"x-forwarded-for": "203.0.113.7"})["url"]
    assert opens(gw, url, **{"x-forwarded-for": "203.0.113.7"}).status_code == 200
    assert_refused(opens(gw, url, **{"x-forwarded-for": "203.0.113.8"}))
    assert_refused(opens(gw, url))  # from the loopback itself


def test_the_admin_api_signs(gw: Gateway, admin_port: int) -> None:
    r = httpx.post(f"http://127.0.0.1:{admin_port}/signed-urls", json={"path": "/files/a/b.txt", "ttl": 300},
                   headers={"authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["key_id"] == "k2"
    assert opens(gw, r.json()["url"]).status_code == 200
    bad = httpx.post(f"http://127.0.0.1:{admin_port}/signed-urls", json={"path": "/files/../etc"},
                     headers={"authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10)
    assert bad.status_code == 400


def sign_cli(gw: Gateway, path: str, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEHOUSE_")}
    done = subprocess.run(
        [sys.executable, "-m", "controlplane.cli", "sign", "-c", str(gw.config_path), path, *args],
        cwd=REPO, env={**env, **NATIVE_ENV, **ENV}, capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_rotation_keeps_old_urls_until_the_key_is_retired(
    upstream: Upstream, gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    before = gateway_factory(config(upstream, ROTATION_START), workers=2, env=ENV)
    old = sign_cli(before, "/files/kept.bin")
    assert "kid=k1" in old and opens(before, old).status_code == 200
    before.stop()

    during = gateway_factory(config(upstream, ROTATION_MIDDLE), workers=2, env=ENV)
    new = sign_cli(during, "/files/kept.bin")
    assert "kid=k2" in new
    assert opens(during, old).status_code == 200  # the previous key still verifies
    assert opens(during, new).status_code == 200
    during.stop()

    after = gateway_factory(config(upstream, ROTATION_END), workers=2, env=ENV)
    assert_refused(opens(after, old))  # retired
    assert opens(after, new).status_code == 200
    # gatehouse sign names what is wrong, and signs nothing.
    cfg = tmp_path / "no-keys.yaml"
    cfg.write_text(yaml.safe_dump({"services": {"s": {"urls": ["http://127.0.0.1:9"]}}, "routes": []}))
    done = subprocess.run([sys.executable, "-m", "controlplane.cli", "sign", "-c", str(cfg), "/f"], cwd=REPO,
                          env={**os.environ, **NATIVE_ENV}, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 2 and "plugins.signed_url has no keys" in done.stderr
