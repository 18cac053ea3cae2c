"""Loading the example plugin (examples/plugins/gatehouse_stamp.py) without a gateway."""

from __future__ import annotations

from pathlib import Path

import pytest

from controlplane.config.errors import ConfigError
from controlplane.config.loader import load_config_text
from controlplane.config.registry import PluginRegistry

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "examples" / "plugins"
SITE = REPO / "tests" / "fixtures" / "plugins" / "site"

CONFIG = """
services:
  backend: {urls: ["http://127.0.0.1:9"]}
plugin_modules: ["gatehouse_stamp:StampPlugin"]
routes:
  - name: stamped
    path: /s
    service: backend
    plugins:
      stamp: {header: "%s"}
"""


def test_entry_point_lookup_finds_the_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    assert PluginRegistry.default().get("stamp") is None  # not without its distribution
    monkeypatch.syspath_prepend(str(SITE))
    cls = PluginRegistry.default().get("stamp")
    assert cls is not None
    assert cls.__module__ == "gatehouse_stamp"
    assert cls.name == "stamp"


def test_dotted_path_config_is_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    loaded = load_config_text(CONFIG % "x-ok", "stamp.yaml", environ={})
    (cls, cfg), = loaded.routes[0].plugins
    assert cls.name == "stamp"
    assert cfg.header == "x-ok"  # type: ignore[attr-defined]


def test_bad_plugin_config_names_route_plugin_and_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    with pytest.raises(ConfigError) as err:
        load_config_text(CONFIG % "Not A Header!", "stamp.yaml", environ={})
    assert err.value.path == "routes[0].plugins.stamp.header"
    assert err.value.line == 10
    assert "stamp.yaml:10: routes[0].plugins.stamp.header" in str(err.value)
