"""A search request of about 1 KB and the JSON Schema (draft 2020-12) its service declares.

Shared by the validator microbenchmarks (bench/bench_json_schema.py, bench/bench_validate.py)
and the harness's ``validate`` scenario, so all of them check the same body."""

from __future__ import annotations

from typing import Any

import orjson

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["query", "limit"],
    "additionalProperties": False,
    "properties": {
        "query": {"type": "string", "minLength": 1, "maxLength": 256},
        "limit": {"type": "integer", "minimum": 1, "maximum": 50},
        "offset": {"type": "integer", "minimum": 0},
        "sort": {"enum": ["relevance", "newest", "oldest"]},
        "filters": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "language": {"type": "string", "pattern": "^[a-z]{2}(-[A-Z]{2})?$"},
                "tags": {"type": "array", "items": {"type": "string", "maxLength": 32}, "maxItems": 20,
                         "uniqueItems": True},
                "published": {
                    "type": "object",
                    "properties": {"from": {"type": "string", "format": "date"},
                                   "to": {"type": "string", "format": "date"}},
                },
                "duration_s": {"type": "array", "prefixItems": [{"type": "number"}, {"type": "number"}],
                               "items": False},
            },
        },
        "context": {"type": "object", "additionalProperties": {"type": "string", "maxLength": 128}},
    },
}

BODY: dict[str, Any] = {
    "query": "field recordings of rain on a tin roof, long takes, no music",
    "limit": 25,
    "offset": 50,
    "sort": "relevance",
    "filters": {
        "language": "en-GB",
        "tags": ["rain", "ambience", "field-recording", "weather", "roof", "night", "calm", "binaural",
                 "nature", "storm", "drizzle", "loop"],
        "published": {"from": "2024-01-01", "to": "2026-06-30"},
        "duration_s": [30.0, 600.0],
    },
    "context": {
        "client": "web-player/5.12.3", "session": "f3b1c9e2-8d4a-4a7f-9b1e-2c6d7e8f9a0b",
        "experiment": "ranking-v7-holdout", "locale": "en-GB", "timezone": "Europe/London",
        "referrer": "https://example.org/collections/weather-and-water?page=3&sort=popular",
        "device": "desktop; 1920x1080; dpr=1.25",
        "user_agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0",
        "previous_query": "thunderstorm recordings with distant thunder and heavy rain, stereo, over ten minutes",
        "campaign": "newsletter-2026-11-weather-sounds",
        "ab_bucket": "b-17",
    },
}

BODY_BYTES = orjson.dumps(BODY)
assert 900 <= len(BODY_BYTES) <= 1200, len(BODY_BYTES)
