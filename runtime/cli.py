"""`openscore serve`: registered on the `openscore` command; heavy imports happen only when it runs."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from typing import Any

from openscore import __version__


def add_serve_command(sub: Any) -> argparse.ArgumentParser:
    """Register `serve` on an argparse subparsers object (the `openscore.commands` entry point)."""
    p = sub.add_parser("serve", help="serve an entry script (init()/run()) over HTTP",
                       description="Serve an Azure ML entry script. Every flag also has an environment "
                                   "variable (see README); flags win over variables, variables over the "
                                   "config file.")
    a = p.add_argument
    # Azure's own spellings (--entry_script, --model_dir, ...) are accepted as aliases.
    a("--entry-script", "--entry_script", dest="entry_script", help="the score.py file (AZUREML_ENTRY_SCRIPT)")
    a("--model-dir", "--model_dir", dest="model_dir", help="passed to the script as AZUREML_MODEL_DIR, as given")
    a("--app-root", dest="app_root", help="app root and working directory (AML_APP_ROOT; default: cwd)")
    a("--source-directory", dest="source_directory", help="added to sys.path (AZUREML_SOURCE_DIRECTORY)")
    a("--host", dest="host", help="bind address (default 0.0.0.0)")
    a("--port", dest="port", help="port (default 5001)")
    a("--workers", "--worker_count", dest="workers", help="worker processes, each runs init() (WORKER_COUNT)")
    a("--max-concurrent-requests", dest="max_concurrent_requests",
      help="concurrency slots per worker (default 1)")
    a("--max-queue-size", dest="max_queue_size", help="requests that may wait for a slot, per worker (64)")
    a("--max-queue-wait-ms", dest="max_queue_wait_ms", help="longest wait for a slot before 503 (60000)")
    a("--scoring-timeout-ms", dest="scoring_timeout_ms", help="run() timeout (SCORING_TIMEOUT_MS, 3600000)")
    a("--max-body-bytes", dest="max_body_bytes", help="request body limit, 413 beyond (104857600)")
    a("--body-read-timeout-s", dest="body_read_timeout_s", help="408 when a body takes longer to arrive (60)")
    a("--header-timeout-s", dest="header_timeout_s",
      help="close a connection whose request headers are not complete within this (15)")
    a("--max-connections", dest="max_connections",
      help="open connections per worker; beyond it idle keep-alive ones are closed, else new ones (4096)")
    a("--graceful-timeout-s", dest="graceful_timeout_s", help="drain time on SIGTERM (30)")
    a("--max-stuck-threads", dest="max_stuck_threads",
      help="abandoned run() threads after which a worker is replaced (16)")
    a("--access-control-allow-origins", "--access_control_allow_origins", dest="cors_origins",
      help="comma-separated CORS origins (AML_CORS_ORIGINS)")
    a("--log-format", dest="log_format", choices=["azure", "json"], help="log line format (azure)")
    a("--no-access-log", dest="access_log", action="store_const", const=False, default=None,
      help="do not log one line per request")
    a("--response-json", dest="response_json", choices=["azure", "numpy"],
      help="'numpy' encodes numpy arrays returned by run() instead of answering 500 (azure)")
    a("--collect-model-data", dest="collect_model_data", metavar="DIR",
      help="write request/response pairs as JSON lines into DIR")
    a("--collect-max-bytes", dest="collect_max_bytes", help="rotate a collection file at this size")
    a("--collect-keep-files", dest="collect_keep_files", help="rotated collection files to keep")
    a("--sklearn-joblib-alias", dest="sklearn_joblib_alias", action="store_const", const=True, default=None,
      help="make `sklearn.externals.joblib` import joblib, for old scripts")
    a("--config-file", "--config_file", dest="config_file", help="JSON file of environment-variable settings")
    a("--model", dest="model", help="serve this ONNX model with no entry script: /score and the Open Inference "
                                   "Protocol under /v2 (OPENSCORE_MODEL)")
    a("--device", dest="device", help="the replica's device: cpu, cuda[:N], opencl[:P:D], fpga[:N], auto "
                                     "(OPENSCORE_DEVICE; default auto with --model); absent = exit code 3")
    a("--max-batch-size", dest="max_batch_size", help="most requests per model or run_batch() call (32)")
    a("--max-queue-delay-ms", dest="max_queue_delay_ms",
      help="extra wait for a fuller batch; 0 = dispatch as soon as the device is idle (0)")
    a("--intra-op-threads", dest="intra_op_threads",
      help="onnxruntime threads per model call with --model (default: onnxruntime's, one per core)")
    p.set_defaults(func=_serve)
    return p


def _export_azure_environment(s: Any) -> None:
    """What the user's code reads: Azure sets these before loading the script (spec 1.1, 1.2)."""
    os.environ["AML_APP_ROOT"] = s.app_root
    os.environ["AZUREML_ENTRY_SCRIPT"] = s.entry_script
    os.environ["AZUREML_MODEL_DIR"] = s.model_dir
    os.environ["SCORING_TIMEOUT_MS"] = str(s.scoring_timeout_ms)
    os.environ["WORKER_COUNT"] = str(s.workers)
    os.environ["SERVICE_NAME"] = s.service_name
    os.environ["SERVICE_VERSION"] = s.service_version
    os.environ["SERVICE_PATH_PREFIX"] = s.service_path_prefix


def _serve(args: argparse.Namespace) -> int:
    import logging
    import signal

    # Held from the first instant: as PID 1 in a container an unhandled SIGTERM would be dropped, so one that
    # arrives while starting up stays pending until the supervisor waits for it (then it drains and exits 0).
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    from openscore.runtime.settings import SettingsError, load_settings

    cli_values = {k: v for k, v in vars(args).items() if k not in ("func", "command")}
    try:
        settings = load_settings(cli_values)
    except SettingsError as e:
        print(f"openscore serve: error: {e}", file=sys.stderr)
        return 1
    from openscore.runtime.settings import ENV_REPLICA_SECRET
    os.environ.pop(ENV_REPLICA_SECRET, None)  # kept in the settings only: the entry script never sees it

    from openscore.runtime.logs import configure_logging
    configure_logging(settings.log_format, settings.log_level)
    log = logging.getLogger("openscore.supervisor")
    for line in settings.warnings:
        log.warning("%s", line)

    # Before prometheus_client is imported anywhere: metrics are shared through files in this folder.
    metrics_dir = tempfile.mkdtemp(prefix="openscore-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        _export_azure_environment(settings)
        from openscore.runtime.nocode import export_environment
        export_environment(settings)  # --model / --device, read by init() through accelerators
        os.chdir(settings.app_root)  # Azure: cwd = app root; user code opens paths relative to it
        sys.path.append(settings.app_root)
        if settings.source_directory:
            sys.path.append(os.path.join(settings.app_root, settings.source_directory))

        from openscore.runtime.shim_loader import install_shims
        shims = install_shims(sklearn_joblib_alias=settings.sklearn_joblib_alias)
        log.info("openscore %s serving %s (model dir %r); compatibility modules: %s", __version__,
                 settings.entry_script_path(), settings.model_dir, ", ".join(shims) or "none needed")

        from openscore.runtime.supervisor import Supervisor, bind_socket
        try:
            sock = bind_socket(settings.host, settings.port)
        except OSError as e:
            log.error("cannot listen on %s:%d: %s", settings.host, settings.port, e.strerror or e)
            return 1
        return Supervisor(settings, sock).run()
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
