"""The per-request path and what it needs at startup."""
