"""Several rounds in one harness run, summarized by medians.

On a shared 2-core host one run's ratio to nginx can move by a third between runs minutes
apart (nginx itself measured 16,000-27,000 req/s within an hour). A round measures every
selected scenario again, nginx first, with fresh processes, so each round's ratios compare
figures taken within a minute or two of each other. The summary gives, per scenario, the
median of the per-round figures with their range, and judges each target by the majority
of the rounds that could judge it (a tie fails): one lucky or unlucky round decides nothing.
"""

from __future__ import annotations

import statistics
from typing import Any

from bench.harness.report import REFERENCE, _fmt, _table


def _spread(values: list[float]) -> dict[str, Any] | None:
    if not values:
        return None
    return {"median": round(statistics.median(values), 3), "min": min(values), "max": max(values),
            "values": values}


def _ok(scenario: dict[str, Any]) -> bool:
    return bool(scenario["status"] == "ok" and scenario["throughput"])


def _first_rate(scenario: dict[str, Any]) -> dict[str, Any] | None:
    return scenario["fixed_rates"][0] if scenario["fixed_rates"] else None


def summarize(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-scenario medians and ranges over ``rounds`` (report.build documents), and targets."""
    names: list[str] = []
    for data in rounds:
        names += [s["name"] for s in data["scenarios"] if s["name"] not in names]
    scenarios: dict[str, dict[str, Any]] = {}
    for name in names:
        rps: list[float] = []
        ratio: list[float] = []
        cpu: list[float] = []
        latency: dict[str, list[float]] = {"p50_ms": [], "p95_ms": [], "p99_ms": []}
        for data in rounds:
            s = next((x for x in data["scenarios"] if x["name"] == name), None)
            if s is None or not _ok(s):
                continue
            rps.append(float(s["throughput"]["rps"]))
            r = data["ratios"].get(name, {}).get("rps_vs_nginx_proxy")
            if r is not None:
                ratio.append(float(r))
            if s["cpu_ms_per_1k"] is not None:
                cpu.append(float(s["cpu_ms_per_1k"]))
            at = _first_rate(s)
            if at is not None and not at["shortfall"]:  # a saturated run's latencies are not the rate's
                for q, values in latency.items():
                    values.append(float(at[q]))
        scenarios[name] = {
            "rounds_measured": len(rps),
            "rps": _spread(rps),
            "rps_vs_nginx_proxy": _spread(ratio),
            "cpu_ms_per_1k": _spread(cpu),
            "at_first_rate": {q: _spread(v) for q, v in latency.items()},
        }
    return {"rounds": len(rounds), "scenarios": scenarios, "targets": _targets(rounds)}


def _targets(rounds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    order: list[str] = []
    by_id: dict[str, list[dict[str, Any]]] = {}
    for data in rounds:
        for t in data["targets"]:
            if t["id"] not in by_id:
                order.append(t["id"])
            by_id.setdefault(t["id"], []).append(t)
    out = []
    for target in order:
        entries = by_id[target]
        judged = [t for t in entries if t["verdict"] in ("PASS", "FAIL")]
        passed = sum(t["verdict"] == "PASS" for t in judged)
        measured = [float(t["measured"]) for t in judged if t["measured"] is not None]
        verdict = "n/a" if not judged else ("PASS" if 2 * passed > len(judged) else "FAIL")
        out.append({"id": target, "unit": entries[0]["unit"], "verdict": verdict, "passed": passed,
                    "judged": len(judged), "measured": _spread(measured)})
    return out


def _range(spread: dict[str, Any] | None, spec: str) -> str:
    if spread is None:
        return "-"
    return f"{_fmt(spread['median'], spec)} ({_fmt(spread['min'], spec)}-{_fmt(spread['max'], spec)})"


def render(summary: dict[str, Any], rate: float | None) -> str:
    at = f"@{rate:g}/s " if rate is not None else "first rate "
    headers = ["scenario", "rounds", "max req/s: median (range)", "x nginx: median (range)", "CPU ms/1k",
               at + "p50", "p95", "p99"]
    rows = []
    for name, s in summary["scenarios"].items():
        lat = s["at_first_rate"]
        rows.append([
            name, str(s["rounds_measured"]), _range(s["rps"], ",.0f"),
            "1.00" if name == REFERENCE else _range(s["rps_vs_nginx_proxy"], ".2f"),
            _fmt((s["cpu_ms_per_1k"] or {}).get("median"), ".0f"),
            *(_fmt((lat[q] or {}).get("median"), ".2f") for q in ("p50_ms", "p95_ms", "p99_ms")),
        ])
    out = ["", f"Summary of {summary['rounds']} rounds (medians; each ratio is taken within its round)", "",
           _table(headers, rows), "",
           "latencies are medians over the rounds that sustained the rate; CPU ms/1k is the median of the rounds",
           "", "targets (verdict of the majority of rounds; a tie fails):"]
    for t in summary["targets"]:
        unit = t["unit"]
        m = t["measured"]
        if m is None:
            value = "-"
        else:
            low, mid, high = (_target_number(m[k], unit) for k in ("min", "median", "max"))
            value = f"median {mid}{'' if unit in ('x', '') else ' '}{unit} ({low}-{high})"
        out.append(f"  [{t['verdict']:>4} {t['passed']}/{t['judged']}] {t['id']}: {value}")
    return "\n".join(out)


def _target_number(v: float, unit: str) -> str:
    """Ratios to three significant digits; other figures with thousands separators, whole
    from 1,000 up (``.4g`` alone would print 15,427 req/s as 1.543e+04)."""
    if unit in ("x", ""):
        return f"{v:.3g}"
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.4g}"
