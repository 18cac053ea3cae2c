"""Bad observability settings stop the gateway with the file, the path and the field."""

from __future__ import annotations

import pytest

from controlplane.config.errors import ConfigError
from controlplane.config.loader import load_config
from tests.support.paths import BAD_CONFIGS

BAD = BAD_CONFIGS / "observability"


@pytest.mark.parametrize(
    ("name", "path", "words"),
    [
        ("publish_interval_zero.yaml", "observability.metrics.publish_interval", ">= 0.05"),
        ("queue_too_small.yaml", "observability.access_log.max_queued_bytes", ">= 4096"),
        ("metrics_unknown_key.yaml", "observability.metrics", "publish_every"),
    ],
)
def test_bad_settings_name_file_path_and_field(name: str, path: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(str(BAD / name), environ={})
    err = info.value
    assert err.file.endswith(name)
    assert err.path.startswith(path), err
    assert words in str(err), err
