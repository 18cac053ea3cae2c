"""Metrics, tracing, access logs and audit events."""
