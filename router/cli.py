"""`openscore router`: run the router, or print Azure's replica sizing formula.

    openscore router --workspace DIR [--config services.yaml] [--host H] [--port N]
                     [--admin-key KEY | --admin-key-file F | OPENSCORE_ROUTER_ADMIN_KEY]
                     [--tls-cert C --tls-key K] [--token-lifetime-s S] [--scale-down-window-s S]
    openscore router --kubernetes [--namespace NS] [--kubeconfig PATH] [--host H] [--port N] ...
    openscore router --size-for-rps 20 --request-seconds 10 [--target-utilization 70] [--slots 1]

Every setting is also an `OPENSCORE_ROUTER_<FLAG>` variable (router/settings.py); flags win. A bad value
is exit code 1 and one line naming the flag or variable.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

# asyncio, ssl and the router itself are imported when the command runs, not when `openscore` builds its
# parser: every `openscore` call registers this command
if TYPE_CHECKING:
    import ssl

    from openscore.router.settings import RouterSettings

log = logging.getLogger("openscore.router")
EXIT_CONFIG = 1


def add_router_command(subparsers: Any) -> argparse.ArgumentParser:
    """Register `router` on an argparse subparsers object; returns the new parser."""
    p = subparsers.add_parser("router", help="the front end for many services: routing, auth, rollout, "
                                             "autoscaling (azureml-fe's counterpart)")
    a = p.add_argument
    # Defaults live in RouterSettings: a flag left out (None) lets its OPENSCORE_ROUTER_* variable apply.
    a("--workspace", help="folder holding the desired state, keys and replica logs (required to run)")
    a("--kubernetes", action="store_const", const=True, default=None,
      help="take services, keys and replicas from a Kubernetes cluster (the pod's service account, or "
           "--kubeconfig) instead of a workspace")
    a("--namespace", help="with --kubernetes: the namespace (default: the pod's own or the context's)")
    a("--kubeconfig", help="with --kubernetes: a kubeconfig file instead of the pod's service account")
    a("--status-interval-s", help="with --kubernetes: a service's status is written at most this often (2)")
    a("--advertise-address", help="with --kubernetes: host:port the other router pods reach this one at "
                                  "(default: $POD_IP and --port)")
    a("--lease-duration-s", help="with --kubernetes: the coordinator Lease of each service: another router "
                                 "takes a dead one's services over within it (10)")
    a("--config", help="services file (JSON or YAML, Azure deploymentconfig keys) applied at start; relative "
                       "paths in it resolve against its folder")
    a("--host", help="bind address (127.0.0.1)")
    a("--port", help="port (8080)")
    a("--admin-key", help="admin API key (prefer OPENSCORE_ROUTER_ADMIN_KEY or --admin-key-file; "
                          "default: generated into <workspace>/admin.key)")
    a("--admin-key-file", help="file holding the admin API key")
    a("--tls-cert", help="PEM certificate (chain): serve HTTPS, TLS 1.2 or later")
    a("--tls-key", help="PEM private key for --tls-cert")
    a("--token-lifetime-s", help="lifetime of issued tokens (3600)")
    a("--scale-down-window-s", help="stable window before scaling down (60)")
    a("--graceful-timeout-s", help="drain time on SIGTERM (30)")
    a("--drain-timeout-s", help="longest wait for a retired replica's in-flight requests (330)")
    a("--request-buffer-bytes", help="request bodies up to this size are read whole before a replica slot is "
                                      "taken (1048576)")
    a("--body-timeout-s", help="a request body must arrive within this plus 1 s per --min-upload-bytes-per-s "
                               "bytes, else 408 (30)")
    a("--min-upload-bytes-per-s", help="the slowest upload rate the body deadline allows (32768)")
    a("--header-timeout-s", help="a request's headers must arrive within this (15)")
    a("--max-connections", help="open client connections at most (4096)")
    a("--no-access-log", dest="access_log", action="store_const", const=False, default=None,
      help="no line per request")
    a("--log-level", help="debug, info, warning, error or critical (info)")
    a("--probe-interval-s", help="readiness probe period while a replica starts (0.1)")
    a("--ready-probe-interval-s", help="readiness probe period once a replica is ready (1)")
    a("--replica-graceful-s", help="a replica's drain time before it is killed (10)")
    a("--max-backoff-s", help="longest wait before restarting a crashing replica (10)")
    a("--size-for-rps", type=float, help="print the replicas needed for this many requests/s and exit")
    a("--request-seconds", type=float, help="with --size-for-rps: time one request takes")
    a("--target-utilization", type=float, default=70.0, help="with --size-for-rps: percent (70)")
    a("--slots", type=int, default=1, help="with --size-for-rps: maxConcurrentRequestsPerContainer (1)")
    p.set_defaults(func=run_router_command)
    return p


def configure_logging(level: str) -> None:
    """One stderr handler with the UTC line format (like the replicas', so the two logs line up); the access
    log recognises exactly this set-up and then writes its lines itself, batched, without the logging module."""
    from openscore.log_lines import UtcFormatter
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(UtcFormatter())
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


def run_router_command(args: argparse.Namespace) -> int:
    if args.size_for_rps is not None:
        return _print_sizing(args)
    try:
        import jwt  # noqa: F401
        import pydantic_settings  # noqa: F401
        import yaml  # noqa: F401
    except ImportError as e:
        print(f"openscore router: error: {e.name} is missing; install the router extra: "
              "pip install 'openscore[router]'", file=sys.stderr)
        return EXIT_CONFIG
    from openscore.router.settings import RouterSettingsError, load_router_settings, unknown_variables
    try:
        settings = load_router_settings(vars(args))
    except RouterSettingsError as e:
        print(f"openscore router: error: {e}", file=sys.stderr)
        return EXIT_CONFIG
    if settings.kubernetes:
        try:
            import lightkube  # noqa: F401
        except ImportError:
            print("openscore router: error: lightkube is missing; install the kubernetes extra: "
                  "pip install 'openscore[kubernetes]'", file=sys.stderr)
            return EXIT_CONFIG
    elif settings.workspace is None:
        print("openscore router: error: --workspace is required (or OPENSCORE_ROUTER_WORKSPACE), "
              "or --kubernetes", file=sys.stderr)
        return EXIT_CONFIG
    elif settings.namespace or settings.kubeconfig:
        print("openscore router: error: --namespace and --kubeconfig go with --kubernetes", file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(settings.log_level)
    for line in unknown_variables():
        log.warning("%s", line)
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    import asyncio
    try:
        return asyncio.run(_serve(settings))
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


def _admin_key(s: RouterSettings, workspace: Path) -> str:
    if s.admin_key is not None and s.admin_key.get_secret_value():  # the flag, else OPENSCORE_ROUTER_ADMIN_KEY
        return s.admin_key.get_secret_value()
    path = s.admin_key_file or workspace / "admin.key"
    try:
        if path.exists():
            return path.read_text().strip()
    except OSError as e:
        raise _ConfigFailure(f"cannot read the admin key file {path}: {e.strerror or e}") from e
    if s.admin_key_file:
        raise _ConfigFailure(f"--admin-key-file {path} does not exist")
    import secrets
    key = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    log.info("generated an admin key in %s", path)
    return key


def _admin_key_file(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError as e:
        raise _ConfigFailure(f"cannot read the admin key file {path}: {e.strerror or e}") from e


def tls_context(cert: str | Path, key: str | Path) -> ssl.SSLContext:
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    return ctx


async def _serve(args: RouterSettings) -> int:
    import asyncio
    import signal
    import ssl

    from aiohttp import web

    from openscore.router.auth import AdminAuth, TokenAuthority
    from openscore.router.config import ConfigError, load_services_file
    from openscore.router.core import Router
    from openscore.router.frontend import Frontend
    from openscore.router.local_target import LocalProcessTarget
    from openscore.router.proxy import BodyPolicy
    from openscore.router.server import make_server
    from openscore.router.state import FileStateStore, InvalidObject, KeysUnusable
    from openscore.router.targets import ComputeTarget

    try:  # first: a broken services file is one error line, before anything is written
        raw = load_services_file(args.config)[0] if args.config else None
    except ConfigError as e:
        raise _ConfigFailure(f"{args.config}: Invalid configuration, {e}") from e
    hook = None
    publisher = None
    client = None
    unusable: tuple[type[BaseException], ...] = (InvalidObject, OSError)  # the desired state cannot be read
    if args.kubernetes:
        from openscore.router import kube_mode
        unusable = (*unusable, kube_mode.KubeError)  # an API server that refuses or does not answer
        try:
            parts = kube_mode.open_cluster(str(args.kubeconfig) if args.kubeconfig else None, args.namespace)
        except kube_mode.KubeModeError as e:
            raise _ConfigFailure(str(e)) from e
        store, client, where = parts.store, parts.client, f"namespace {parts.namespace}"
    else:
        assert args.workspace is not None
        workspace = args.workspace.resolve()
        store, where = FileStateStore(workspace), str(workspace / "store")
    try:
        try:
            if args.kubernetes:
                assert client is not None
                key = (args.admin_key.get_secret_value() if args.admin_key else "") or \
                    (_admin_key_file(args.admin_key_file) if args.admin_key_file else "") or \
                    await kube_mode.admin_key_from_secret(client, parts.namespace)
            else:
                key = _admin_key(args, workspace)
            admin = AdminAuth(key)
        except ValueError as e:
            raise _ConfigFailure(str(e)) from e
        except Exception as e:
            if args.kubernetes and isinstance(e, kube_mode.KubeModeError):
                raise _ConfigFailure(str(e)) from e
            raise
        try:
            if raw is not None:
                try:
                    await store.put_services(raw)
                except ConfigError as e:
                    raise _ConfigFailure(f"{args.config}: Invalid configuration, {e}") from e
            if args.kubernetes:
                await kube_mode.ensure_signing_key(store)
            else:
                await store.ensure_signing_key()
        except (KeysUnusable, *unusable) as e:  # type: ignore[misc]  # mypy wants a plain tuple here
            raise _ConfigFailure(f"the desired state in {where} cannot be used: {e}") from e
        try:
            ssl_ctx = tls_context(args.tls_cert, args.tls_key) if args.tls_cert and args.tls_key else None
        except (OSError, ssl.SSLError) as e:
            raise _ConfigFailure(f"cannot load the TLS certificate/key: {e}") from e
    except BaseException:
        await store.close()
        if client is not None:
            await client.close()
        raise

    target: ComputeTarget
    if args.kubernetes:
        target = parts.target
        publisher = kube_mode.StatusPublisher(kube_mode.status_writer(parts.client, parts.namespace),
                                              args.status_interval_s)
        hook = publisher.changed
    else:
        target = LocalProcessTarget(workspace, probe_interval_s=args.probe_interval_s,
                                    ready_probe_interval_s=args.ready_probe_interval_s,
                                    graceful_s=args.replica_graceful_s, max_backoff_s=args.max_backoff_s)
    router = Router(store, target, tokens=TokenAuthority(args.token_lifetime_s),
                    scale_down_window_s=args.scale_down_window_s, drain_timeout_s=args.drain_timeout_s,
                    on_replicas_changed=hook)
    leases = None
    if args.kubernetes:
        leases = kube_mode.coordinate(router, parts, args, key)
        if publisher is not None:  # the service's coordinator writes its status; the others would repeat it
            publisher.should_write = router.coordinates
    front = Frontend(router, admin, access_log_enabled=args.access_log,
                     body_policy=BodyPolicy(args.request_buffer_bytes, args.body_timeout_s,
                                            args.min_upload_bytes_per_s))
    server = make_server(front.handle, header_timeout_s=args.header_timeout_s,
                         max_connections=args.max_connections)
    loop = asyncio.get_running_loop()
    try:
        listener = await loop.create_server(server, args.host, args.port, ssl=ssl_ctx, backlog=2048)
    except OSError as e:
        await store.close()
        if client is not None:
            await client.close()
        raise _ConfigFailure(f"cannot listen on {args.host}:{args.port}: {e.strerror or e}") from e
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        try:
            await router.start()
        except unusable as e:
            raise _ConfigFailure(f"the desired state in {where} cannot be used: {e}") from e
        if leases is not None:
            leases.start()
            # ready once this router knows who coordinates what: before that it would admit on its own
            try:
                await asyncio.wait_for(leases.first_round.wait(), args.lease_duration_s)
            except TimeoutError:
                log.warning("no answer from the router Leases after %.0f s; serving on its own meanwhile",
                            args.lease_duration_s)
        front.ready = True
        log.info("router listening on %s://%s:%d (%s)", "https" if ssl_ctx else "http", args.host,
                 args.port, where)
        await stop.wait()
        log.info("stopping: draining %d in-flight request(s)", front.in_flight)
        front.ready = False
        front.draining = True
        listener.close()
        for _ in range(int(args.graceful_timeout_s * 20)):
            if front.in_flight == 0:
                break
            await asyncio.sleep(0.05)
    finally:
        listener.close()
        # the services go back once nothing of ours holds their slots (another router takes over at once);
        # then the peers' links close, which ends their WebSocket requests, and the server can stop
        if leases is not None:
            await leases.stop()
        if router.coordination is not None:
            await router.coordination.close()
        await server.shutdown(1.0)
        if publisher is not None:
            await publisher.stop()
        await router.stop()
        await front.close()
        await store.close()
        if client is not None:
            await client.close()
    del web
    return 0
