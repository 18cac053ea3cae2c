"""A configured identity provider: its static keys, its JWKS source and its verifier.

One ``Provider`` per provider name per worker (a runtime singleton), shared by every route
that uses it, so the verified-token cache and the JWKS fetches are per provider.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping

from plugins.auth.config import HMAC_ALGORITHMS, HMAC_MIN_KEY_BYTES, ProviderConfig
from plugins.auth.errors import InvalidToken, Reason, UnknownKey
from plugins.auth.jwks import JwksSource
from plugins.auth.keys import KeyRing, UnusableKey, VerifyKey, hmac_key, pem_key
from plugins.auth.verifier import Clock, TokenVerifier, Verified


def static_keys(config: ProviderConfig, environ: Mapping[str, str] | None = None) -> list[VerifyKey]:
    """Keys given by the configuration; ValueError names the offending field."""
    env = os.environ if environ is None else environ
    allowed = frozenset(config.algorithms)
    keys: list[VerifyKey] = []
    hmac_algs = allowed & HMAC_ALGORITHMS
    if hmac_algs:
        secret = config.secret if config.secret is not None else env.get(config.secret_env)
        if not secret:
            raise ValueError(
                f"secret: {', '.join(sorted(hmac_algs))} needs a shared secret: set 'secret' "
                f"(e.g. ${{{config.secret_env}}}) or the environment variable {config.secret_env}"
            )
        need = max(HMAC_MIN_KEY_BYTES[a] for a in hmac_algs)
        raw = secret.encode("utf-8")
        if len(raw) < need:
            raise ValueError(f"secret: {max(hmac_algs)} needs a secret of at least {need} bytes (RFC 7518)")
        keys.append(hmac_key(raw, hmac_algs))
    for i, pk in enumerate(config.public_keys):
        try:
            if pk.pem_file is not None:
                with open(pk.pem_file, "rb") as fh:
                    pem = fh.read()
            else:
                pem = (pk.pem or "").encode("utf-8")
            keys.append(pem_key(pk.kid, pem, allowed, config.min_rsa_bits))
        except (OSError, UnusableKey) as exc:
            raise ValueError(f"public_keys[{i}]: {exc}") from None
    return keys


class Provider:
    def __init__(
        self,
        name: str,
        config: ProviderConfig,
        *,
        clock: Clock = time.time,
        monotonic: Clock = time.monotonic,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self._static = static_keys(config, environ)
        # Without a JWKS the static keys are all there is; with one, tokens wait for (or
        # are refused until) the first fetch unless static keys can serve meanwhile.
        loaded = config.jwks_url is None or bool(self._static)
        self.verifier = TokenVerifier(config, KeyRing(self._static, loaded=loaded), clock)
        self.jwks: JwksSource | None = None
        if config.jwks_url is not None:
            self.jwks = JwksSource(name, config.jwks_url, config, self._install, clock=monotonic)

    def _install(self, fetched: list[VerifyKey]) -> None:
        self.verifier.set_ring(KeyRing([*self._static, *fetched]))

    async def start(self) -> None:
        if self.jwks is not None:
            await self.jwks.start()

    async def stop(self) -> None:
        if self.jwks is not None:
            await self.jwks.stop()

    async def verify_after_refresh(self, token: bytes) -> Verified:
        """Slow path for a token whose key is not loaded: one cooldown-limited refresh, then
        verify again. Raises InvalidToken or KeysUnavailable."""
        if self.jwks is not None:
            await self.jwks.refresh_for_unknown_kid()
        try:
            return self.verifier.verify(token)
        except UnknownKey:
            raise InvalidToken(Reason.UNKNOWN_KID) from None
