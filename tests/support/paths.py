"""Where the repository and the test fixtures are, for tests at any depth of the tree."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
BAD_CONFIGS = FIXTURES / "bad_configs"
