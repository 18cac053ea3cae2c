"""Fixtures of the plugins' unit tests."""

from tests.support.scripted_peer import peer_factory

__all__ = ["peer_factory"]
