"""Granian's per-request ASGI glue, compiled.

For every request, Granian's runtime thread calls a scheduling closure
(``_cbsched_aioschedule``) that makes the request's coroutine and hands it to the event
loop, where a second closure starts it as a task. The coroutine comes from two more
wrappers: ``_asgi_call_wrap`` fills in ``root_path`` and ``state`` and calls the app, and
``_future_watcher_wrapper`` awaits that and reports the outcome to Granian's watcher. All
four are interpreted, so each request paid for an interpreted coroutine resumed at every
await of the request and for four interpreted calls, two of them on Granian's thread while
it holds the GIL the event loop needs. ``AsgiEntry`` and ``Scheduler`` do the same compiled.

They are installed into Granian's modules before the workers are forked, and only for the
Granian releases whose glue they were checked against (``SUPPORTED``): on any other
release, or with Granian's own access log on, the stock glue runs.
tests/unit/test_granian_glue.py compares them with the installed release's glue.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final

# Granian releases whose glue AsgiEntry and Scheduler reproduce (granian/asgi.py,
# _callback_wrapper without an access log; granian/_futures.py, _future_watcher_wrapper
# and _cbsched_aioschedule).
SUPPORTED: Final = ("2.8.",)

App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


class AsgiEntry:
    """Called by Granian's scheduler with a request's watcher; returns the task's coroutine."""

    __slots__ = ("_app", "_root_path", "_state")

    def __init__(self, app: App, root_path: str, state: dict[str, Any]) -> None:
        self._app = app
        self._root_path = root_path
        self._state = state

    def __call__(self, watcher: Any) -> Awaitable[None]:
        return self.run(watcher)

    async def run(self, watcher: Any) -> None:
        scope: dict[str, Any] = watcher.scope
        scope["root_path"] = self._root_path
        scope["state"] = self._state.copy()
        proto = watcher.proto
        try:
            await self._app(scope, proto.receive, proto.send)
        except BaseException as exc:  # Granian's watcher reports it (and logs what it must)
            watcher.err(exc)
            return
        watcher.done()


class Scheduler:
    """Granian's per-request scheduling call (``_cbsched_aioschedule``): runs on Granian's
    thread, so it only queues the start on the loop; the coroutine is made there."""

    __slots__ = ("_cb", "_ctx", "_loop", "_start")

    def __init__(self, loop: Any, ctx: Any, cb: Callable[[Any], Any]) -> None:
        self._loop = loop
        self._ctx = ctx
        self._cb = cb
        self._start = self.start  # bound once: Granian calls this for every request

    def __call__(self, watcher: Any) -> None:
        self._loop.call_soon_threadsafe(self._start, watcher, context=self._ctx)

    def start(self, watcher: Any) -> None:
        watcher.taskref(self._loop.create_task(self._cb(watcher)))


def install() -> str | None:
    """Put ``AsgiEntry`` and ``Scheduler`` in place of Granian's glue; None when installed,
    else why not."""
    import granian
    import granian._futures as futures
    import granian.server.mp as mp

    version = granian.__version__
    if not version.startswith(SUPPORTED):
        return f"Granian {version} is not a release the compiled ASGI glue was checked against"
    stock_call_wrap = getattr(mp, "_asgi_call_wrap", None)
    stock_watcher_wrap = getattr(mp, "_future_watcher_wrapper", None)
    if stock_call_wrap is None or stock_watcher_wrap is None or not hasattr(futures, "_cbsched_aioschedule"):
        return f"Granian {version} lacks the glue functions this replaces"
    if getattr(futures, "_cbsched_aioschedule") is Scheduler:  # noqa: B009 - a private name
        return None  # installed already

    def call_wrap(callback: App, scope_opts: dict[str, Any], state: dict[str, Any],
                  access_log_fmt: str | None = None) -> Any:
        if access_log_fmt:
            return stock_call_wrap(callback, scope_opts, state, access_log_fmt)
        # Already the whole entry: the watcher wrapper below passes it through.
        return AsgiEntry(callback, scope_opts.get("url_path_prefix") or "", state)

    def watcher_wrap(inner: Any) -> Any:
        return inner if isinstance(inner, AsgiEntry) else stock_watcher_wrap(inner)

    setattr(mp, "_asgi_call_wrap", call_wrap)  # noqa: B010 - private names mypy cannot see
    setattr(mp, "_future_watcher_wrapper", watcher_wrap)  # noqa: B010
    setattr(futures, "_cbsched_aioschedule", Scheduler)  # noqa: B010
    return None
