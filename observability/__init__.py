"""Metrics, tracing, access logs and audit events."""

import hotpath  # noqa: F401  first: it installs the compiled modules (hotpath/native) before ours load
