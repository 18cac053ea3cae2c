"""A realistic route table of about 100 routes, built from the real config path.

Routes are written as YAML-shaped dicts and compiled by the real loader and builder, so
the benchmark measures the table the gateway would build from such a file.
"""

from __future__ import annotations

from typing import Any

import yaml

from controlplane.config.loader import LoadedConfig, load_config_text

RESOURCES = (
    "users", "orders", "items", "carts", "payments", "invoices", "shipments", "returns", "reviews",
    "products", "categories", "inventory", "warehouses", "suppliers", "coupons", "promotions",
    "subscriptions", "plans", "accounts", "sessions", "tokens", "webhooks", "events", "reports",
    "exports", "imports", "files", "images", "search", "recommendations",
)


def route_table_config(upstream_url: str, *, versions: int = 3) -> dict[str, Any]:
    """``versions`` x 30 prefix routes, a few exact and method-restricted ones, and a catch-all."""
    # A write-only route listed before the general one: GETs must fall through to it.
    routes: list[dict[str, Any]] = [
        {"name": "users-write", "path": "/api/v2/users", "methods": ["POST", "PUT", "DELETE"],
         "service": "backend"}
    ]
    routes.extend(
        {"name": f"v{v}-{res}", "path": f"/api/v{v}/{res}", "service": "backend"}
        for v in range(1, versions + 1)
        for res in RESOURCES
    )
    exact_posts = ("/auth/login", "/auth/logout", "/auth/refresh")
    routes.extend(
        {"name": p.rsplit("/", 1)[1], "path": p, "match": "exact", "methods": ["POST"], "service": "backend"}
        for p in exact_posts
    )
    routes += [
        {"name": "me", "path": "/api/v1/me", "match": "exact", "methods": ["GET"], "service": "backend"},
        {"name": "static", "path": "/static", "methods": ["GET", "HEAD"], "service": "backend"},
        {"name": "catch-all", "path": "/", "service": "backend"},
    ]
    return {
        "services": {"backend": {"urls": [upstream_url], "timeouts": {"connect": 1, "read": 5, "total": 10}}},
        "routes": routes,
    }


def load(config: dict[str, Any]) -> LoadedConfig:
    return load_config_text(yaml.safe_dump(config, sort_keys=False), "<bench>", environ={})
