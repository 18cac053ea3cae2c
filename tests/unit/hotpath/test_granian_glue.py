"""The compiled ASGI glue does what Granian's own glue does, on the installed release."""

from __future__ import annotations

import asyncio
import contextvars
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

import granian
import pytest
from granian._futures import _cbsched_aioschedule, _future_watcher_wrapper
from granian.asgi import _callback_wrapper

from hotpath.granian_glue import SUPPORTED, AsgiEntry, Scheduler


class Proto:
    def __init__(self) -> None:
        self.receive = object()
        self.send = object()


class Watcher:
    """Granian's watcher as the glue sees it: the request's scope and protocol, and the
    two ways a request's task reports back."""

    def __init__(self) -> None:
        self.scope: dict[str, Any] = {"type": "http", "path": "/x", "root_path": "ignored"}
        self.proto = Proto()
        self.reported: list[tuple[str, Any]] = []

    def done(self) -> None:
        self.reported.append(("done", None))

    def err(self, exc: BaseException) -> None:
        self.reported.append(("err", exc))


class App:
    def __init__(self, fail: BaseException | None = None) -> None:
        self.calls: list[tuple[dict[str, Any], Any, Any]] = []
        self.fail = fail

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.calls.append((dict(scope), receive, send))
        await asyncio.sleep(0)  # suspends once, as a request does
        if self.fail is not None:
            raise self.fail


def _run_stock(app: App, prefix: str, state: dict[str, Any]) -> Watcher:
    watcher = Watcher()
    asyncio.run(_future_watcher_wrapper(_callback_wrapper(app, {"url_path_prefix": prefix}, state))(watcher))
    return watcher


def _run_ours(app: App, prefix: str, state: dict[str, Any]) -> Watcher:
    watcher = Watcher()
    asyncio.run(AsgiEntry(app, prefix, state)(watcher))  # type: ignore[arg-type]
    return watcher


def test_installed_granian_is_a_supported_release() -> None:
    assert granian.__version__.startswith(SUPPORTED), (
        f"Granian {granian.__version__}: check hotpath/granian_glue.py against its ASGI glue, then add it"
    )


@pytest.mark.parametrize("fail", [None, RuntimeError("boom"), asyncio.CancelledError()])
def test_entry_matches_stock_glue(fail: BaseException | None) -> None:
    state = {"shared": 1}
    stock_app, our_app = App(fail), App(fail)
    stock, ours = _run_stock(stock_app, "/prefix", state), _run_ours(our_app, "/prefix", state)

    assert [c[0] for c in our_app.calls] == [c[0] for c in stock_app.calls]
    assert our_app.calls[0][0]["root_path"] == "/prefix" and our_app.calls[0][0]["state"] == state
    assert our_app.calls[0][1:] == (ours.proto.receive, ours.proto.send)
    assert ours.scope == stock.scope
    assert ours.scope["state"] is not state  # each request gets its own copy of the state
    assert [kind for kind, _ in ours.reported] == [kind for kind, _ in stock.reported]
    assert [exc for _, exc in ours.reported] == [fail]


class TaskWatcher:
    def __init__(self) -> None:
        self.tasks: list[asyncio.Task[None]] = []

    def taskref(self, task: asyncio.Task[None]) -> None:
        self.tasks.append(task)


@pytest.mark.parametrize("make", [_cbsched_aioschedule, Scheduler], ids=["stock", "ours"])
def test_scheduler_starts_each_request_as_a_task_in_the_server_context(make: Callable[..., Any]) -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    ctx = contextvars.copy_context()
    ctx.run(var.set, "server")
    seen: list[tuple[str, TaskWatcher]] = []

    async def request(watcher: TaskWatcher) -> None:
        seen.append((var.get(), watcher))

    loop = asyncio.new_event_loop()
    try:
        schedule = make(loop, ctx, request)
        watchers = [TaskWatcher(), TaskWatcher()]
        # Granian calls it from its own thread.
        threads = [threading.Thread(target=schedule, args=(w,)) for w in watchers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        loop.run_until_complete(asyncio.sleep(0.05))
    finally:
        loop.close()
    assert sorted(id(w) for _, w in seen) == sorted(id(w) for w in watchers)
    assert {v for v, _ in seen} == {"server"}
    for w in watchers:
        assert len(w.tasks) == 1 and isinstance(w.tasks[0], asyncio.Task) and w.tasks[0].done()


_INSTALL_CHECK = """
import granian._futures as futures
import granian.server.mp as mp
from hotpath.granian_glue import AsgiEntry, Scheduler, install

async def app(scope, receive, send):
    pass

assert install() is None
assert install() is None  # a second call changes nothing
entry = mp._future_watcher_wrapper(mp._asgi_call_wrap(app, {}, {}, None))
assert isinstance(entry, AsgiEntry), type(entry)
logged = mp._future_watcher_wrapper(mp._asgi_call_wrap(app, {}, {}, "[%(time)s] %(path)s"))
assert not isinstance(logged, AsgiEntry)  # Granian's access log keeps its own glue
assert futures._cbsched_aioschedule is Scheduler
print("ok")
"""


def test_install_replaces_the_glue_granian_forks_its_workers_with() -> None:
    # In a process of its own: installing changes Granian's module for the process.
    done = subprocess.run([sys.executable, "-c", _INSTALL_CHECK], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
