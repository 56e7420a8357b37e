"""All configuration of the scoring server, in one typed place.

Sources, strongest first: command-line flags, environment variables (Azure's names where Azure has
them), the JSON config file (AZUREML_CONFIG_FILE, or config.json in the app root or beside the entry
script, whose keys are the environment-variable names), then defaults.
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from openscore import __version__

DEFAULT_PORT = 5001
DEFAULT_SCORING_TIMEOUT_MS = 3_600_000  # azmlinfsrv's own default (AKS deployments set 60 000)
DEFAULT_MAX_BODY_BYTES = 100 * 1024 * 1024  # azureml-fe's payload cap
ENV_MODEL = "OPENSCORE_MODEL"
ENV_REPLICA_SECRET = "OPENSCORE_REPLICA_SECRET"
# the built-in entry script --model stands on (runtime/nocode_score.py)
NOCODE_SCRIPT = str(Path(__file__).resolve().with_name("nocode_score.py"))


class SettingsError(ValueError):
    """A configuration value is missing or invalid; the message names the key."""


def _parse_bool(key: str, value: str) -> bool:
    v = value.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off", ""):
        return False
    raise SettingsError(f"{key} must be true or false, got {value!r}")


def _int_parser(minimum: int, maximum: int | None = None) -> Callable[[str, str], int]:
    def parse(key: str, value: str) -> int:
        try:
            n = int(str(value).strip())
        except ValueError:
            raise SettingsError(f"{key} must be an integer, got {value!r}") from None
        if n < minimum or (maximum is not None and n > maximum):
            bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
            raise SettingsError(f"{key} must be {bound}, got {n}")
        return n
    return parse


def _str(key: str, value: str) -> str:
    return str(value)


def _origins(key: str, value: str) -> tuple[str, ...]:
    return tuple(o.strip() for o in str(value).split(",") if o.strip())


def _choice(*allowed: str) -> Callable[[str, str], str]:
    def parse(key: str, value: str) -> str:
        v = str(value).strip().lower()
        if v not in allowed:
            raise SettingsError(f"{key} must be one of {', '.join(allowed)}, got {value!r}")
        return v
    return parse


def _float_parser(minimum: float) -> Callable[[str, str], float]:
    def parse(key: str, value: str) -> float:
        try:
            n = float(str(value).strip())
        except ValueError:
            raise SettingsError(f"{key} must be a number, got {value!r}") from None
        if not n >= minimum:
            raise SettingsError(f"{key} must be >= {minimum:g}, got {n:g}")
        return n
    return parse


def _device(key: str, value: str) -> str:
    from openscore.accelerators.devices import parse_device
    from openscore.accelerators.errors import InvalidDeviceNameError
    try:
        parse_device(value)
    except InvalidDeviceNameError as e:
        raise SettingsError(f"{key}: {e}") from None
    return str(value).strip().lower()


def _opt(env: str | None = None, parse: Callable[[str, str], Any] = _str, **kw: Any) -> Any:
    """A dataclass field carrying its environment variable name and parser."""
    return field(metadata={"env": env, "parse": parse}, **kw)


@dataclass
class ServerSettings:
    """Everything `openscore serve` is configured with. Field docs live in README's reference."""

    entry_script: str | None = _opt("AZUREML_ENTRY_SCRIPT", default=None)
    model_dir: str = _opt("AZUREML_MODEL_DIR", default="")
    app_root: str = _opt("AML_APP_ROOT", default="")
    source_directory: str | None = _opt("AZUREML_SOURCE_DIRECTORY", default=None)
    host: str = _opt("OPENSCORE_HOST", default="0.0.0.0")
    port: int = _opt(None, _int_parser(1, 65535), default=DEFAULT_PORT)
    workers: int = _opt("WORKER_COUNT", _int_parser(1, 256), default=1)
    scoring_timeout_ms: int = _opt("SCORING_TIMEOUT_MS", _int_parser(1), default=DEFAULT_SCORING_TIMEOUT_MS)
    max_concurrent_requests: int = _opt("OPENSCORE_MAX_CONCURRENT_REQUESTS", _int_parser(1, 4096), default=1)
    max_queue_size: int = _opt("OPENSCORE_MAX_QUEUE_SIZE", _int_parser(0), default=64)
    max_queue_wait_ms: int = _opt("OPENSCORE_MAX_QUEUE_WAIT_MS", _int_parser(0), default=60_000)
    max_body_bytes: int = _opt("OPENSCORE_MAX_BODY_BYTES", _int_parser(1), default=DEFAULT_MAX_BODY_BYTES)
    body_read_timeout_s: int = _opt("OPENSCORE_BODY_READ_TIMEOUT_S", _int_parser(1), default=60)
    header_timeout_s: float = _opt("OPENSCORE_HEADER_TIMEOUT_S", _float_parser(0.001), default=15.0)
    max_connections: int = _opt("OPENSCORE_MAX_CONNECTIONS", _int_parser(1, 1_000_000), default=4096)
    graceful_timeout_s: int = _opt("OPENSCORE_GRACEFUL_TIMEOUT_S", _int_parser(0), default=30)
    max_stuck_threads: int = _opt("OPENSCORE_MAX_STUCK_THREADS", _int_parser(1), default=16)
    service_name: str = _opt("SERVICE_NAME", default="ML service")
    service_path_prefix: str = _opt("SERVICE_PATH_PREFIX", default="")
    service_version: str = _opt("SERVICE_VERSION", default="1.0")
    cors_origins: tuple[str, ...] = _opt("AML_CORS_ORIGINS", _origins, default=())
    server_version_header: str = _opt("HTTP_X_MS_SERVER_VERSION", default=f"openscore/{__version__}")
    log_format: str = _opt("OPENSCORE_LOG_FORMAT", _choice("azure", "json"), default="azure")
    log_level: str = _opt("AZUREML_LOG_LEVEL", _choice("debug", "info", "warning", "error", "critical"),
                          default="info")
    access_log: bool = _opt("OPENSCORE_ACCESS_LOG", _parse_bool, default=True)
    response_json: str = _opt("OPENSCORE_RESPONSE_JSON", _choice("azure", "numpy"), default="azure")
    collect_model_data: str | None = _opt("OPENSCORE_COLLECT_MODEL_DATA", default=None)
    collect_max_bytes: int = _opt("OPENSCORE_COLLECT_MAX_BYTES", _int_parser(1024), default=64 * 1024 * 1024)
    collect_keep_files: int = _opt("OPENSCORE_COLLECT_KEEP_FILES", _int_parser(1), default=10)
    sklearn_joblib_alias: bool = _opt("OPENSCORE_SKLEARN_JOBLIB_ALIAS", _parse_bool, default=False)
    config_file: str | None = _opt("AZUREML_CONFIG_FILE", default=None)
    # Accelerators and no-code ONNX serving (runtime/nocode.py)
    model: str | None = _opt(ENV_MODEL, default=None)
    device: str | None = _opt("OPENSCORE_DEVICE", _device, default=None)
    max_batch_size: int = _opt("OPENSCORE_MAX_BATCH_SIZE", _int_parser(1, 4096), default=32)
    max_queue_delay_ms: float = _opt("OPENSCORE_MAX_QUEUE_DELAY_MS", _float_parser(0.0), default=0.0)
    intra_op_threads: int | None = _opt("OPENSCORE_INTRA_OP_THREADS", _int_parser(1, 1024), default=None)
    # From OPENSCORE_REPLICA_SECRET only (never a flag or the config file): requests must carry it (replica_secret.py)
    replica_secret: str | None = field(default=None, repr=False, metadata={"env": None, "internal": True})
    # Not a setting: what loading noticed (unknown config-file keys), logged once logging is configured.
    warnings: list[str] = field(default_factory=list, metadata={"env": None, "internal": True})

    @property
    def scoring_timeout_s(self) -> float:
        return self.scoring_timeout_ms / 1000.0

    def entry_script_path(self) -> Path:
        """Azure's rule: join(app_root, entry_script); an absolute path wins."""
        assert self.entry_script is not None
        return Path(self.app_root, self.entry_script)


_FIELDS = {f.name: f for f in fields(ServerSettings) if not f.metadata.get("internal")}
# Azure's variables (spec 1.2) that openscore accepts without using: known, so not warned about.
_AZURE_ONLY = frozenset({
    "WORKER_TIMEOUT", "WORKER_PRELOAD", "SERVER_PORT", "HEALTH_PORT", "SEPERATE_HEALTH_ENDPOINT", "WORKSPACE_NAME",
    "AML_APP_INSIGHTS_ENABLED", "AML_APP_INSIGHTS_KEY", "APP_INSIGHTS_LOG_RESPONSE_ENABLED",
    "AML_MDC_STORAGE_ENABLED", "HOSTNAME", "AZUREML_DEBUG_PORT", "AML_DBG_MODEL_INFO", "AML_DBG_RESOURCE_INFO",
    "AML_MODEL_DC_STORAGE_ENABLED", "AML_MODEL_DC_STORAGE", "AML_MODEL_DC_DEBUG", "AML_MODEL_DC_BOUNDARY",
})
KNOWN_VARIABLES = frozenset(f.metadata["env"] for f in _FIELDS.values() if f.metadata["env"]) | _AZURE_ONLY


def unknown_key_warnings(values: Mapping[str, Any], where: str) -> list[str]:
    """A config-file key that is no variable is ignored, as Azure does, with one line naming the nearest."""
    out = []
    for k in values:
        if k not in KNOWN_VARIABLES:
            near = difflib.get_close_matches(k, sorted(KNOWN_VARIABLES), n=1)
            out.append(f"{where}: ignoring unknown key {k}" + (f" (did you mean {near[0]}?)" if near else ""))
    return out


def _config_file_values(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise SettingsError(f"config file {path} could not be read as JSON: {e}") from None
    if not isinstance(data, dict):
        raise SettingsError(f"config file {path} must hold a JSON object of environment-variable names")
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in data.items()}


def load_settings(cli: Mapping[str, Any], environ: Mapping[str, str] | None = None,
                  cwd: str | None = None) -> ServerSettings:
    """Merge CLI values (None = not given), the environment and the config file."""
    environ = os.environ if environ is None else environ
    cwd = cwd or os.getcwd()

    def env_of(name: str, source: Mapping[str, Any]) -> Any:
        key = _FIELDS[name].metadata["env"]
        return source.get(key) if key else None

    # The config file can be named by flag or env; its location may depend on app root/entry script.
    app_root = cli.get("app_root") or environ.get("AML_APP_ROOT") or cwd
    entry = cli.get("entry_script") or environ.get("AZUREML_ENTRY_SCRIPT")
    config_path = cli.get("config_file") or environ.get("AZUREML_CONFIG_FILE")
    file_values: dict[str, str] = {}
    file_used: Path | None = None
    if config_path:
        file_used = Path(app_root, config_path)
    else:
        candidates = [Path(app_root, "config.json")]
        if entry:
            candidates.append(Path(app_root, entry).parent / "config.json")
        file_used = next((c for c in candidates if c.is_file()), None)
    if file_used is not None:
        file_values = _config_file_values(file_used)

    values: dict[str, Any] = {}
    for name, f in _FIELDS.items():
        parse = f.metadata["parse"]
        key = f.metadata["env"] or f"--{name.replace('_', '-')}"
        raw = cli.get(name)
        if raw is not None:
            values[name] = raw if not isinstance(raw, str) else parse(f"--{name.replace('_', '-')}", raw)
            continue
        raw, where = env_of(name, environ), key
        if raw is None:
            raw, where = env_of(name, file_values), f"{key} (in {file_used})"
        if raw is not None:
            values[name] = parse(where, raw)

    s = ServerSettings(**values)
    s.replica_secret = environ.get(ENV_REPLICA_SECRET) or None
    if file_used is not None:
        s.warnings.extend(unknown_key_warnings(file_values, f"config file {file_used}"))
    # Azure: AML_APP_ROOT defaults to cwd; the CLI flag's entry script is realpath'ed against cwd.
    s.app_root = os.path.abspath(s.app_root or cwd)
    if cli.get("entry_script"):
        s.entry_script = os.path.realpath(os.path.join(cwd, cli["entry_script"]))
    if s.model:
        apply_model_defaults(s, explicit=values, cwd=cwd, model_from_cli=bool(cli.get("model")))
    if s.entry_script is None:
        raise SettingsError("no entry script: pass --entry-script (or --model for no-code ONNX serving), "
                            "or set AZUREML_ENTRY_SCRIPT")
    if not s.entry_script_path().is_file():
        raise SettingsError(f"entry script {s.entry_script_path()} does not exist")
    return s


def apply_model_defaults(s: ServerSettings, *, explicit: Mapping[str, Any], cwd: str, model_from_cli: bool) -> None:
    """--model: resolve the path (flag: against cwd; variable: against the app root), default the device to
    `auto`, use the built-in entry script when none is given, and let concurrent requests reach the batcher."""
    assert s.model
    base = cwd if model_from_cli else s.app_root
    s.model = os.path.realpath(os.path.join(base, s.model))
    if not os.path.isfile(s.model):
        raise SettingsError(f"model {s.model} does not exist (--model / {ENV_MODEL})")
    if s.device is None:
        s.device = "auto"
    if s.entry_script is None:
        s.entry_script = NOCODE_SCRIPT
    if "max_concurrent_requests" not in explicit:
        # No thread per slot on this path (the model is awaited); two batches' worth keeps the device fed.
        s.max_concurrent_requests = min(4096, 2 * s.max_batch_size)
