"""The auth plugin's metric families."""

from __future__ import annotations

from prometheus_client import Counter

AUTH_DECISIONS = Counter("gatehouse_auth_decisions", "Authentication outcomes.", ("route", "outcome"))

JWKS_FETCHES = Counter("gatehouse_jwks_fetches", "JWKS fetches, by result.", ("provider", "result"))

API_KEY_LOOKUPS = Counter(
    "gatehouse_api_key_lookups", "API-key lookups in Redis, by result.", ("key_set", "result")
)
