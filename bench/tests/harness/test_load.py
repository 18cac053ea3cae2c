"""The harness's load-generator wrappers and Redis accounting (bench/harness/load.py)."""

from __future__ import annotations

import os
import socket
import subprocess

import pytest

from bench.harness import load
from tests.support.processes import RedisServer


def test_refuses_non_loopback_targets() -> None:
    for url in ("http://10.0.0.1:80/", "http://example.com/", "http://192.168.1.1/"):
        with pytest.raises(load.LoadError, match="loopback"):
            load.require_loopback(url)
    for url in ("http://127.0.0.1:8080/api", "http://localhost:1/", "http://127.0.0.2:9/"):
        load.require_loopback(url)


def test_wrk_script_rotates_prepared_requests_and_reports_json() -> None:
    script = load.wrk_script({"x-fixed": "1"}, ("authorization", "Bearer ", ["t1", "t]]2"]), "/api/x")
    # "[[" would open a Lua long string: table keys are written with spaces.
    assert "wrk.headers[ [==[x-fixed]==] ] = [==[1]==]" in script
    assert "[==[t]]2]==]" in script  # values survive Lua quoting
    assert "function request()" in script and "function done(" in script
    assert "GATEHOUSE_WRK_RESULT" in script


def test_redis_delta_counts_round_trips_scripts_and_commands() -> None:
    before = {"commands": 100, "scripts": 10, "reads": 50, "cpu_us": 1_000}
    after = {"commands": 160, "scripts": 20, "reads": 71, "cpu_us": 3_500}  # 20 client reads + the INFO itself
    delta = load.redis_delta(before, after, requests=100)
    assert delta == {"round_trips_per_request": 0.2, "script_calls_per_request": 0.1, "commands_per_request": 0.6,
                     "cpu_ms_per_1k": 25.0}
    assert load.redis_delta(before, after, requests=0)["round_trips_per_request"] == 0.0


def _resp(*args: str) -> bytes:
    out = f"*{len(args)}\r\n".encode()
    for a in args:
        out += f"${len(a.encode())}\r\n{a}\r\n".encode()
    return out


def test_redis_info_counts_a_pipeline_or_a_script_call_as_one_round_trip() -> None:
    redis = RedisServer()
    try:
        client = socket.create_connection(("127.0.0.1", redis.port), timeout=5)
        reader = client.makefile("rb")
        info = load.RedisInfo(redis.port)
        try:
            before = info.snapshot()
            client.sendall(_resp("EVAL", "redis.call('SET', KEYS[1], 1) return redis.call('INCR', KEYS[1])", "1", "k"))
            assert reader.readline() == b":2\r\n"
            client.sendall(_resp("PING") * 3)  # one write: a pipeline
            assert [reader.readline() for _ in range(3)] == [b"+PONG\r\n"] * 3
            after = info.snapshot()
        finally:
            info.close()
            reader.close()
            client.close()
    finally:
        redis.stop()
    delta = load.redis_delta(before, after, requests=2)
    assert delta["round_trips_per_request"] == 1.0  # two reads: the EVAL, the pipeline
    assert delta["script_calls_per_request"] == 0.5
    assert delta["commands_per_request"] == 3.0  # EVAL, SET, INCR and three PINGs
    assert after["cpu_us"] >= before["cpu_us"] > 0  # the server's CPU time, read from INFO
    assert after["script_us"] > before["script_us"]  # the EVAL's own time


def test_cpu_seconds_of_a_process_tree() -> None:
    proc = subprocess.Popen(["sh", "-c", "sleep 5 & wait"])
    try:
        tree = load.process_tree(proc.pid)
        assert proc.pid in tree and len(tree) >= 1
        assert load.cpu_seconds(tree) >= 0.0
        assert load.cpu_seconds([os.getpid()]) > 0.0  # this test process has used CPU
    finally:
        proc.kill()
        proc.wait(5)


def test_wrk_script_posts_a_body_and_keeps_fixed_headers_when_rotating() -> None:
    script = load.wrk_script({"content-type": "application/json"}, ("authorization", "Bearer ", ["t1"]), "/api/x",
                             body='{"q": 1}')
    assert 'wrk.method = "POST"' in script and 'wrk.body = [==[{"q": 1}]==]' in script
    # A rotated request replaces wrk.headers: the content type must be in its own table.
    assert "wrk.format(nil, [==[/api/x]==], {[ [==[content-type]==] ] = [==[application/json]==], " in script
