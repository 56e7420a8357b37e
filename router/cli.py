"""`openscore router`: run the router, or print Azure's replica sizing formula.

    openscore router --workspace DIR [--config services.yaml] [--host H] [--port N]
                     [--admin-key KEY | --admin-key-file F | OPENSCORE_ROUTER_ADMIN_KEY]
                     [--tls-cert C --tls-key K] [--token-lifetime-s S] [--scale-down-window-s S]
    openscore router --size-for-rps 20 --request-seconds 10 [--target-utilization 70] [--slots 1]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import signal
import ssl
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger("openscore.router")
EXIT_CONFIG = 1


def add_router_command(subparsers: Any) -> argparse.ArgumentParser:
    """Register `router` on an argparse subparsers object; returns the new parser."""
    p = subparsers.add_parser("router", help="the front end for many services: routing, auth, rollout, "
                                             "autoscaling (azureml-fe's counterpart)")
    a = p.add_argument
    a("--workspace", help="folder holding the desired state, keys and replica logs (required to run)")
    a("--config", help="services file (JSON or YAML, Azure deploymentconfig keys) applied at start")
    a("--host", default=os.environ.get("OPENSCORE_ROUTER_HOST", "127.0.0.1"), help="bind address (127.0.0.1)")
    a("--port", type=int, default=int(os.environ.get("OPENSCORE_ROUTER_PORT", "8080")), help="port (8080)")
    a("--admin-key", help="admin API key (prefer OPENSCORE_ROUTER_ADMIN_KEY or --admin-key-file; "
                          "default: generated into <workspace>/admin.key)")
    a("--admin-key-file", help="file holding the admin API key")
    a("--tls-cert", help="PEM certificate (chain): serve HTTPS, TLS 1.2 or later")
    a("--tls-key", help="PEM private key for --tls-cert")
    a("--token-lifetime-s", type=int, default=3600, help="lifetime of issued tokens (3600)")
    a("--scale-down-window-s", type=float, default=60.0, help="stable window before scaling down (60)")
    a("--graceful-timeout-s", type=float, default=30.0, help="drain time on SIGTERM (30)")
    a("--no-access-log", dest="access_log", action="store_false", help="no line per request")
    a("--log-level", default=os.environ.get("OPENSCORE_ROUTER_LOG_LEVEL", "info"))
    a("--size-for-rps", type=float, help="print the replicas needed for this many requests/s and exit")
    a("--request-seconds", type=float, help="with --size-for-rps: time one request takes")
    a("--target-utilization", type=float, default=70.0, help="with --size-for-rps: percent (70)")
    a("--slots", type=int, default=1, help="with --size-for-rps: maxConcurrentRequestsPerContainer (1)")
    p.set_defaults(func=run_router_command)
    return p


def run_router_command(args: argparse.Namespace) -> int:
    if args.size_for_rps is not None:
        return _print_sizing(args)
    if not args.workspace:
        print("openscore router: error: --workspace is required", file=sys.stderr)
        return EXIT_CONFIG
    try:
        import jwt  # noqa: F401
        import yaml  # noqa: F401
    except ImportError as e:
        print(f"openscore router: error: {e.name} is missing; install the router extra: "
              "pip install 'openscore[router]'", file=sys.stderr)
        return EXIT_CONFIG
    from openscore.log_lines import UtcFormatter
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(UtcFormatter())  # UTC like the replicas' lines, so the two logs line up
    logging.basicConfig(level=args.log_level.upper(), handlers=[handler])
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    try:
        return asyncio.run(_serve(args))
    except _ConfigFailure as e:
        print(f"openscore router: error: {e}", file=sys.stderr)
        return EXIT_CONFIG


class _ConfigFailure(Exception):
    pass


def _print_sizing(args: argparse.Namespace) -> int:
    from openscore.router.config import replicas_for
    if args.request_seconds is None:
        print("openscore router: error: --size-for-rps needs --request-seconds", file=sys.stderr)
        return EXIT_CONFIG
    try:
        n = replicas_for(args.size_for_rps, args.request_seconds, args.target_utilization, args.slots)
    except ValueError as e:
        print(f"openscore router: error: {e}", file=sys.stderr)
        return EXIT_CONFIG
    print(f"replicas = ceil({args.size_for_rps:g} req/s x {args.request_seconds:g} s / "
          f"{args.target_utilization / 100:g} / {args.slots} slots) = {n}")
    return 0


def _admin_key(args: argparse.Namespace, workspace: Path) -> str:
    if args.admin_key:
        return args.admin_key
    if os.environ.get("OPENSCORE_ROUTER_ADMIN_KEY"):
        return os.environ["OPENSCORE_ROUTER_ADMIN_KEY"]
    path = Path(args.admin_key_file) if args.admin_key_file else workspace / "admin.key"
    if path.exists():
        return path.read_text().strip()
    if args.admin_key_file:
        raise _ConfigFailure(f"--admin-key-file {path} does not exist")
    key = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    log.info("generated an admin key in %s", path)
    return key


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    return ctx


async def _serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from openscore.router.auth import AdminAuth, TokenAuthority
    from openscore.router.config import ConfigError, load_services_file
    from openscore.router.core import Router
    from openscore.router.frontend import Frontend
    from openscore.router.local_target import LocalProcessTarget
    from openscore.router.server import make_server
    from openscore.router.state import FileStateStore

    workspace = Path(args.workspace).resolve()
    store = FileStateStore(workspace)
    try:
        admin = AdminAuth(_admin_key(args, workspace))
    except ValueError as e:
        raise _ConfigFailure(str(e)) from e
    try:
        if args.config:
            try:
                raw, _ = load_services_file(args.config)
                await store.put_services(raw)
            except ConfigError as e:
                raise _ConfigFailure(f"{args.config}: Invalid configuration, {e}") from e
        await store.ensure_signing_key()
        if bool(args.tls_cert) != bool(args.tls_key):
            raise _ConfigFailure("--tls-cert and --tls-key go together")
        try:
            ssl_ctx = tls_context(args.tls_cert, args.tls_key) if args.tls_cert else None
        except (OSError, ssl.SSLError) as e:
            raise _ConfigFailure(f"cannot load the TLS certificate/key: {e}") from e
    except BaseException:
        await store.close()
        raise

    router = Router(store, LocalProcessTarget(workspace), tokens=TokenAuthority(args.token_lifetime_s),
                    scale_down_window_s=args.scale_down_window_s)
    front = Frontend(router, admin, access_log_enabled=args.access_log)
    server = make_server(front.handle)
    loop = asyncio.get_running_loop()
    try:
        listener = await loop.create_server(server, args.host, args.port, ssl=ssl_ctx, backlog=2048)
    except OSError as e:
        await store.close()
        raise _ConfigFailure(f"cannot listen on {args.host}:{args.port}: {e.strerror or e}") from e
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await router.start()
        front.ready = True
        log.info("router listening on %s://%s:%d (workspace %s)", "https" if ssl_ctx else "http", args.host,
                 args.port, workspace)
        await stop.wait()
        log.info("stopping: draining %d in-flight request(s)", front.in_flight)
        front.ready = False
        listener.close()
        for _ in range(int(args.graceful_timeout_s * 20)):
            if front.in_flight == 0:
                break
            await asyncio.sleep(0.05)
        await server.shutdown(1.0)
    finally:
        listener.close()
        await router.stop()
        await front.close()
        await store.close()
    del web
    return 0
