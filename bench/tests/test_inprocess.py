"""The in-process driver (python -m bench.inprocess): it drives real requests, checks each
answer, and refuses arguments that would measure nothing."""

from __future__ import annotations

import pytest

from bench import inprocess


@pytest.mark.parametrize("variant", ["bare", "limiter"])
def test_drives_the_requests_it_reports(variant: str) -> None:
    measured = inprocess.drive(variant, 66, 4)  # rounded down to whole rounds of 4 callers
    assert measured.requests == 64
    assert measured.cpu_s > 0 and measured.wall_s > 0
    assert measured.line(variant).startswith(f"{variant}: 64 requests, cpu ")


def test_a_refused_request_fails_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    from bench.harness import scenarios

    # 3 per second: the checked first request passes, the driven ones soon get 429.
    monkeypatch.setattr(scenarios, "HUGE_TIER", {"per_second": 3, "per_minute": 180, "burst": 3})
    with pytest.raises(RuntimeError, match="got 429"):
        inprocess.drive("limiter", 40, 4)


def test_arguments_that_measure_nothing_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        inprocess.main(["bare", "--requests", "3", "--callers", "4"])
    assert exit_info.value.code == 2
    assert "--requests must be at least --callers" in capsys.readouterr().err
