"""A real JWKS endpoint for tests: an HTTP server on a free port whose keys can rotate.

It runs in a thread of the test process, so tests hold the private keys, sign tokens
with them, rotate or remove keys, make the endpoint fail or stall, and count fetches.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from tests.support.processes import free_port


def rsa_private_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


class SigningKey:
    """A private key, its kid and algorithm, and its public JWK."""

    def __init__(self, kind: str = "RSA", kid: str | None = None, bits: int = 2048) -> None:
        self.kid = kid or f"{kind.lower()}-{uuid.uuid4().hex[:12]}"
        self.private: Any
        if kind == "RSA":
            self.private = rsa_private_key(bits)
            self.alg = "RS256"
            jwk = RSAAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        elif kind == "EC":
            self.private = ec.generate_private_key(ec.SECP256R1())
            self.alg = "ES256"
            jwk = ECAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        else:
            raise ValueError(kind)
        self.jwk: dict[str, Any] = {**jwk, "kid": self.kid, "use": "sig", "alg": self.alg}

    def sign(self, claims: dict[str, Any], headers: dict[str, Any] | None = None, kid: str | None = None) -> str:
        hdr = {"kid": kid or self.kid, **(headers or {})}
        return jwt.encode(claims, self.private, algorithm=self.alg, headers=hdr)


class JwksServer:
    def __init__(self, keys: list[SigningKey] | None = None) -> None:
        self.keys: list[SigningKey] = list(keys or [])
        self.fetches = 0
        self.fetch_times: list[float] = []
        self.status = 200
        self.delay = 0.0
        self.raw: bytes | None = None  # serve these bytes instead of the key set
        self._lock = threading.Lock()
        self.port = free_port()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with owner._lock:
                    owner.fetches += 1
                    owner.fetch_times.append(time.monotonic())
                    status, delay = owner.status, owner.delay
                    body = owner.raw if owner.raw is not None else owner.document()
                if delay:
                    time.sleep(delay)
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the client gave up (timeout tests)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/.well-known/jwks.json"

    def document(self) -> bytes:
        return json.dumps({"keys": [k.jwk for k in self.keys]}).encode()

    def add(self, key: SigningKey) -> SigningKey:
        with self._lock:
            self.keys.append(key)
        return key

    def rotate(self, kind: str = "RSA") -> SigningKey:
        """Publish a new key and withdraw every old one."""
        key = SigningKey(kind)
        with self._lock:
            self.keys = [key]
        return key

    def reset_count(self) -> None:
        with self._lock:
            self.fetches = 0
            self.fetch_times = []

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
