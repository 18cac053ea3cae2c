"""``gatehouse``: run, check, sign, demo, native.

``run`` validates the configuration in the main process (so a bad file stops startup with
one clear message, not one traceback per worker), then starts Granian with N BlackSheep
ASGI workers on uvloop. Flags override environment variables, which override the file.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from controlplane.config.errors import ConfigError
from controlplane.config.loader import LoadedConfig, load_config
from controlplane.lifecycle import RUN_DIR_ENV
from controlplane.server import make_server

DEFAULT_CONFIG = Path(__file__).parent / "defaults" / "gatehouse.yaml"
DEMO_UPSTREAM_PORT = 9001


def _shared_state_users(loaded: LoadedConfig) -> list[str]:
    users: list[str] = []
    for vr in loaded.routes:
        for cls, _ in vr.plugins:
            if getattr(cls, "shared_state", False):
                users.append(f"routes '{vr.config.name}' plugin '{cls.name}'")
    for name, svc in loaded.services.items():
        if svc.breaker:
            users.append(f"service '{name}' circuit breaker")
    return users


def check_state_backend(loaded: LoadedConfig, workers: int) -> str:
    """Refuse silent per-worker limits; return the banner line about state."""
    if loaded.state_backend == "redis":
        return f"shared state: Redis at {_redact(loaded.gateway.redis.url or '')} (exact across workers and pods)"
    users = _shared_state_users(loaded)
    if users and workers > 1:
        raise ConfigError(
            loaded.file,
            "server.workers",
            f"the in-process state backend keeps rate limits and breakers per process, so with {workers} "
            f"workers every limit would be {workers}x too loose ({', '.join(users[:3])}). Set REDIS_URL "
            "(or redis.url) to share state exactly, or run with --workers 1.",
        )
    return (
        "shared state: in-process (no Redis configured). Limits and breakers are exact for this single "
        "process only; they are not shared with other pods. Set REDIS_URL to share them."
    )


def _redact(url: str) -> str:
    if "@" in url:
        scheme, _, rest = url.partition("://")
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def cmd_run(args: argparse.Namespace) -> int:
    from hotpath.native.loader import status as native_status

    native = native_status()
    if native.error:
        print(f"gatehouse: {native.error}", file=sys.stderr)
        return 2
    # First: prometheus-client chooses per-process files only if this is set before it is
    # imported, and Granian forks the workers from this process.
    from observability.multiproc import prepare_dir

    prepare_dir()
    for flag, var in (("host", "GATEHOUSE_HOST"), ("port", "GATEHOUSE_PORT"), ("workers", "GATEHOUSE_WORKERS")):
        value = getattr(args, flag)
        if value is not None:
            os.environ[var] = str(value)
    config_path = str(Path(args.config).resolve())
    try:
        loaded = load_config(config_path)
        state_line = check_state_backend(loaded, loaded.gateway.server.workers)
        # Build once in the main process too: plugin constructors validate cross-field rules.
        from controlplane.build import build_gateway, new_runtime

        build_gateway(loaded, new_runtime(loaded))
        from controlplane.admin.build import admin_token
        from controlplane.worker import build_telemetry

        build_telemetry(loaded)
        admin_token(loaded)
    except ConfigError as exc:
        print(f"gatehouse: configuration error: {exc}", file=sys.stderr)
        return 2
    run_dir = Path(tempfile.mkdtemp(prefix="gatehouse-run-"))
    os.environ[RUN_DIR_ENV] = str(run_dir)
    os.environ["GATEHOUSE_CONFIG"] = config_path
    server = loaded.gateway.server
    print(
        f"gatehouse: listening on http://{server.host}:{server.port} with {server.workers} worker(s); "
        f"{len(loaded.routes)} route(s), {len(loaded.services)} service(s) from {config_path}\n"
        f"gatehouse: {state_line}\n"
        f"gatehouse: {native.describe()}",
        file=sys.stderr,
        flush=True,
    )
    make_server(loaded, run_dir).serve()
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    import orjson

    try:
        loaded = load_config(str(Path(args.config).resolve()))
        from controlplane.build import build_gateway, new_runtime

        gateway, _ = build_gateway(loaded, new_runtime(loaded))
        check_state_backend(loaded, loaded.gateway.server.workers)
    except ConfigError as exc:
        print(f"gatehouse: configuration error: {exc}", file=sys.stderr)
        return 2
    table = describe_routes(loaded, gateway.table.describe())
    if args.json:
        sys.stdout.write(orjson.dumps(table, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    off = loaded.env.disabled_routes
    print(f"{loaded.file}: OK, {len(table)} route(s)"
          f"{f' ({len(off)} switched off by the environment)' if off else ''}, state backend: {loaded.state_backend}")
    width = max((len(r["name"]) for r in table), default=4)
    for r in table:
        methods = ",".join(r["methods"])
        plugins = ", ".join(r["plugins"]) or "-"
        state = f"OFF by {r['switched_off_by']}" if r["switched_off_by"] else f"plugins: {plugins}"
        print(
            f"  {r['name']:<{width}}  {r['match']:<6} {r['path']:<28} {methods:<18} -> {r['service']}"
            f"{r['upstream'] if r['upstream'] != r['path'] else ''}  {state}"
        )
    print("services:")
    width = max((len(name) for name in loaded.services), default=4)
    for name, svc in loaded.services.items():
        source = loaded.env.service_urls.get(name)
        print(f"  {name:<{width}}  {', '.join(svc.urls)}{f'  (from {source})' if source else ''}")
    return 0


def describe_routes(loaded: LoadedConfig, table: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The compiled route table with what the environment changed: whether each route is
    served (and which variable switched it off), and its service's URLs (and which variable
    set them)."""
    by_name = {vr.config.name: vr for vr in loaded.routes}
    out = []
    for row in table:
        vr = by_name[row["name"]]
        off = loaded.env.disabled_routes.get(row["name"])
        service = loaded.services[row["service"]]
        out.append({
            **row,
            "plugins": [cls.name for cls, _ in vr.plugins] if off else row["plugins"],
            "enabled": off is None,
            "switched_off_by": off,
            "urls": list(service.urls),
            "urls_from": loaded.env.service_urls.get(row["service"]),
        })
    return out


def cmd_sign(args: argparse.Namespace) -> int:
    """Print a signed URL for a path, with the keys of the configuration's signed_url."""
    import orjson

    from plugins.signed_url.admin import NotConfigured, sign

    try:
        loaded = load_config(str(Path(args.config).resolve()))
    except ConfigError as exc:
        print(f"gatehouse: configuration error: {exc}", file=sys.stderr)
        return 2
    optional = {"key_id": args.key_id, "ip": args.bind_ip, "subject": args.bind_subject, "base_url": args.base_url}
    body: dict[str, Any] = {"path": args.path, "ttl": args.ttl, "method": args.method,
                            **{k: v for k, v in optional.items() if v is not None}}
    try:
        signed = sign(loaded.plugin_settings.get("signed_url"), body)
    except (NotConfigured, ValueError) as exc:
        print(f"gatehouse: cannot sign: {exc}", file=sys.stderr)
        return 2
    if args.json:
        sys.stdout.write(orjson.dumps(signed).decode() + "\n")
    else:
        print(signed["url"])
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The demo upstream plus the gateway on the embedded example configuration."""
    os.environ.setdefault("DEMO_SERVICE_URL", f"http://127.0.0.1:{DEMO_UPSTREAM_PORT}")
    upstream = subprocess.Popen(
        [sys.executable, "-m", "controlplane.demo_upstream", "--port", str(DEMO_UPSTREAM_PORT)],
    )
    try:
        time.sleep(0.5)
        if upstream.poll() is not None:
            print("gatehouse: the demo upstream failed to start", file=sys.stderr)
            return 1
        if args.workers is None:
            args.workers = 2 if os.environ.get("REDIS_URL") else 1
        args.config = str(DEFAULT_CONFIG)
        print(
            f"gatehouse: demo upstream on http://127.0.0.1:{DEMO_UPSTREAM_PORT}; try:\n"
            f"  curl -i http://127.0.0.1:{args.port or 8080}/api/hello     (rate-limited: 5/s, burst 10)\n"
            f"  curl -i http://127.0.0.1:{args.port or 8080}/cached/hello  (X-Cache: MISS, then HIT)\n"
            f"  curl -N http://127.0.0.1:{args.port or 8080}/api/events    (server-sent events)",
            file=sys.stderr,
        )
        return cmd_run(args)
    finally:
        upstream.send_signal(signal.SIGTERM)
        try:
            upstream.wait(5)
        except subprocess.TimeoutExpired:
            upstream.kill()


def cmd_native(args: argparse.Namespace) -> int:
    from hotpath.native import manifest
    from hotpath.native.loader import check, status

    if args.action == "build":
        from controlplane.native_build import BuildError, build

        out = Path(args.out) if args.out else manifest.native_dir()
        print(f"gatehouse: compiling {len(manifest.MODULES)} modules with mypyc into {out} ...", file=sys.stderr)
        try:
            build(out)
        except BuildError as exc:
            print(f"gatehouse: native build failed: {exc}", file=sys.stderr)
            return 1
        print(f"gatehouse: native build ready in {out}", file=sys.stderr)
        return 0
    current = status()
    directory = Path(args.out) if args.out else manifest.native_dir()
    files, reason = check(directory, manifest.source_root())
    print(f"mode: {current.mode} ({current.describe()} in this process)")
    print(f"build in {directory}: {'usable, ' + reason if files is not None else reason}")
    if current.error:
        print(f"gatehouse: {current.error}", file=sys.stderr)
        return 1
    if files is None:
        return 1
    if current.active and directory.resolve() == Path(current.directory).resolve():
        # Usable on paper is not enough: load every module, as this user, the way a worker does.
        failure = _import_compiled(manifest.MODULES, manifest.ext_suffix())
        if failure:
            print(f"gatehouse: the native build does not load: {failure}", file=sys.stderr)
            return 1
        print(f"loaded: all {len(manifest.MODULES)} compiled modules")
    return 0


def _import_compiled(modules: tuple[str, ...], suffix: str) -> str | None:
    import importlib

    for name in modules:
        try:
            module = importlib.import_module(name)
        except Exception as exc:  # any failure to load is the answer
            return f"{name}: {type(exc).__name__}: {exc}"
        if not str(getattr(module, "__file__", "")).endswith(suffix):
            return f"{name} was loaded from {module.__file__}, not from the build"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gatehouse", description="Gatehouse API gateway")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="start the gateway")
    run.add_argument("-c", "--config", required=True, help="YAML configuration file")
    demo = sub.add_parser("demo", help="start a demo upstream and the gateway on the embedded example config")
    for p in (run, demo):
        p.add_argument("--workers", type=int, help="worker processes (env GATEHOUSE_WORKERS)")
        p.add_argument("--host", help="listen address (env GATEHOUSE_HOST)")
        p.add_argument("--port", type=int, help="listen port (env GATEHOUSE_PORT)")
    check = sub.add_parser("check", help="validate a config and print the compiled route table")
    check.add_argument("-c", "--config", required=True)
    check.add_argument("--json", action="store_true", help="print the route table as JSON")
    signer = sub.add_parser("sign", help="print a signed URL (plugins.signed_url keys of a config)")
    signer.add_argument("-c", "--config", required=True)
    signer.add_argument("path", help="normalized path to sign, optionally with a query")
    signer.add_argument("--ttl", type=int, default=3600, help="seconds the URL is valid (default 3600)")
    signer.add_argument("--method", default="GET", help="the method the URL is for (default GET; HEAD too)")
    signer.add_argument("--key-id", help="sign with this key (default: plugins.signed_url.sign_with)")
    bound = signer.add_mutually_exclusive_group()
    bound.add_argument("--bind-ip", help="bind the signature to this client address")
    bound.add_argument("--bind-subject", help="bind the signature to this subject")
    signer.add_argument("--base-url", help="put before the path (https://files.example.com)")
    signer.add_argument("--json", action="store_true", help="print url, expires_at, method and key_id as JSON")
    native = sub.add_parser("native", help="compile the hot path with mypyc, or report whether a build is usable")
    native.add_argument("action", choices=("build", "status"))
    native.add_argument("--out", help="build directory (env GATEHOUSE_NATIVE_DIR; default hotpath/native/lib)")
    args = parser.parse_args(argv)
    if args.command == "native":
        return cmd_native(args)
    if args.command == "run":
        return cmd_run(args)
    if args.command == "demo":
        return cmd_demo(args)
    if args.command == "sign":
        return cmd_sign(args)
    return cmd_check(args)


if __name__ == "__main__":
    raise SystemExit(main())
