"""The signed_url plugin's metric families."""

from __future__ import annotations

from prometheus_client import Counter

CHECKS = Counter(
    "gatehouse_signed_url_checks",
    "Signed-URL verifications; outcome is valid, or why one was refused.",
    ("route", "outcome"),
)

ISSUED = Counter("gatehouse_signed_urls_issued", "Signed URLs issued by a route.", ("route",))
