"""`openscore model|service|environment|image ...`: Azure's `az ml` verbs on a local workspace.

A line copied from Azure's docs works with `az ml` replaced by `openscore`: the long flags and Azure's
single-dash two-letter spellings (`-ic`, `-dc`, `-ct`) are both accepted. Every failure is one message on
stderr and exit code 1, and leaves the workspace as it was. Read verbs take `--output/-o json|table`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from openscore.deployer.errors import DeployError
from openscore.deployer.output import FORMATS, emit

if TYPE_CHECKING:
    from openscore.deployer.lifecycle import ServiceInfo, ServiceManager
    from openscore.deployer.workspace import Workspace

EXIT_ERROR = 1
SERVICE_COLUMNS = ("name", "computeType", "state", "scoringUri", "models", "updatedTime")
MODEL_COLUMNS = ("name", "version", "framework", "fileName", "size", "createdTime", "tags")
ENV_COLUMNS = ("name", "version", "hash", "packages")


# ====================================================================== shared plumbing
class _VerbParser(argparse.ArgumentParser):
    """A verb's flags: a usage mistake (an unknown --output, a missing -n) is bad input like any other, so it
    is one line and exit 1, not argparse's usage text and exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        # An unknown flag after a verb is the verb's mistake: refused here, not by the top-level parser
        # (which would print its usage and exit 2).
        ns, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return ns, extras


def _common(p: argparse.ArgumentParser, *, output: bool = False) -> None:
    p.add_argument("-w", "--workspace", "--workspace-name", dest="workspace",
                   help="the workspace folder (default: $OPENSCORE_WORKSPACE, the one a config.json names, "
                        "else ~/.openscore)")
    if output:
        p.add_argument("-o", "--output", choices=FORMATS, default="json", help="json (default) or table")


def _kv(values: list[str] | None, what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values or []:
        if "=" not in item:
            raise DeployError(f"--{what} {item!r} must be key=value")
        k, v = item.split("=", 1)
        if not k:
            raise DeployError(f"--{what} {item!r} has no key")
        out[k] = v
    return out


def _run(fn: Callable[[argparse.Namespace], int | None], prog: str) -> Callable[[argparse.Namespace], int]:
    def wrapped(args: argparse.Namespace) -> int:
        try:
            return int(fn(args) or 0)
        except DeployError as e:
            print(f"openscore {prog}: error: {e}", file=sys.stderr)
            return EXIT_ERROR
        except KeyboardInterrupt:
            print(f"openscore {prog}: interrupted", file=sys.stderr)
            return 130
    return wrapped


def _ws(args: argparse.Namespace, create: bool = True) -> Workspace:
    from openscore.deployer.workspace import Workspace
    return Workspace.find(args.workspace, create=create)


def _manager(args: argparse.Namespace) -> ServiceManager:
    from openscore.deployer.lifecycle import ServiceManager
    return ServiceManager(_ws(args))


def _say(text: str) -> None:
    print(text, flush=True)


def _models(ws: Workspace, refs: list[str] | None) -> list[Any]:
    return [ws.models.resolve(r) for r in refs or []]


def _model_ref(args: argparse.Namespace) -> tuple[str, int | None]:
    """-i NAME:VERSION, or -n NAME [-v VERSION]."""
    if getattr(args, "model_id", None):
        ref = args.model_id
        if ":" in ref:
            name, _, ver = ref.rpartition(":")
            if not ver.isdigit():
                raise DeployError(f"model id {ref!r} must be NAME:VERSION with a whole-number version")
            return name, int(ver)
        return ref, args.version
    if not getattr(args, "name", None):
        raise DeployError("give the model as -i NAME:VERSION or -n NAME [--version N]")
    return args.name, args.version


def _inference(path: str | None, env_name: str | None, env_version: str | None) -> Any:
    if path is None:
        if env_name:
            raise DeployError("-e/--environment-name needs --ic (the inference config with the entry script)")
        return None
    from openscore.deployer.inference_config import load_inference_config
    ic = load_inference_config(path)
    if env_name:
        ic = ic.with_environment_ref(env_name, env_version)
    elif env_version:
        raise DeployError("--ev/--environment-version needs -e/--environment-name")
    return ic


def _deployment(path: str | None) -> Any:
    if path is None:
        return None
    from openscore.deployer.deployment_config import load_deployment_config
    return load_deployment_config(path)


def _finish(mgr: ServiceManager, info: ServiceInfo, args: argparse.Namespace) -> int:
    if getattr(args, "no_wait", False):
        emit(info.to_json(), "json", sys.stdout)
        return 0
    info = mgr.wait(info.name, timeout_s=args.timeout, show_output=True, log=_say)
    emit(info.to_json(), getattr(args, "output", "json"), sys.stdout, SERVICE_COLUMNS)
    return 0


def _deploy_flags(p: argparse.ArgumentParser, *, update: bool = False) -> None:
    a = p.add_argument
    a("-m", "--model", dest="models", action="append", metavar="NAME:VERSION",
      help="a registered model (repeatable; NAME alone = its latest version)")
    a("--ic", "-ic", "--inference-config-file", dest="inference_config", metavar="FILE",
      help="inferenceconfig.json / YAML (entryScript, sourceDirectory, environment)")
    a("--dc", "-dc", "--deploy-config-file", dest="deploy_config", metavar="FILE",
      help="deploymentconfig.json / YAML (computeType local, aks or aksendpoint)")
    a("-e", "--environment-name", dest="environment_name", help="a registered environment")
    a("--ev", "-ev", "--environment-version", dest="environment_version", help="its version (default latest)")
    a("--rebuild", action="store_true", help="build the environment again even if one with its hash exists")
    a("--no-wait", action="store_true", help="return once the router has accepted it")
    a("--timeout", type=float, default=None, help="seconds to wait for Healthy (900)")
    a("--description", "-d" if not update else "--desc", dest="description", help="the service's description")
    a("--tag", dest="tags", action="append", metavar="KEY=VALUE", help="a tag (repeatable)")
    if not update:
        a("--ct", "-ct", "--compute-target", dest="compute_target",
          help="the compute target (only `local` is attached; default: the embedded local target)")
        a("--overwrite", action="store_true", help="replace a service of that name")
        a("--property", dest="properties", action="append", metavar="KEY=VALUE", help="a property (repeatable)")


# ====================================================================== model
def add_model_command(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("model", help="register, list, download and deploy models (az ml model)")
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB", parser_class=_VerbParser)

    r = sub.add_parser("register", help="register a file or folder as the next version of a model")
    r.add_argument("-n", "--name", required=True)
    r.add_argument("-p", "--model-path", "--path", dest="path", required=True, help="a file or folder")
    r.add_argument("--tag", dest="tags", action="append", metavar="KEY=VALUE")
    r.add_argument("--property", dest="properties", action="append", metavar="KEY=VALUE")
    r.add_argument("-d", "--description", default="")
    r.add_argument("--model-framework", "--framework", dest="framework")
    r.add_argument("--model-framework-version", dest="framework_version")
    _common(r, output=True)
    r.set_defaults(func=_run(_model_register, "model register"))

    lst = sub.add_parser("list", help="registered models")
    lst.add_argument("-n", "--name", "--model-name", dest="name")
    lst.add_argument("--tag", dest="tags", action="append", metavar="KEY[=VALUE]")
    lst.add_argument("--property", dest="properties", action="append", metavar="KEY[=VALUE]")
    lst.add_argument("-l", "--latest", action="store_true", help="only the latest version of each name")
    _common(lst, output=True)
    lst.set_defaults(func=_run(_model_list, "model list"))

    for verb, helptext in (("show", "one model version"), ("download", "copy a model's file or folder out"),
                           ("update", "change tags, properties or the description"),
                           ("delete", "delete a model version (refused while a service uses it)")):
        q = sub.add_parser(verb, help=helptext)
        q.add_argument("-i", "--model-id", dest="model_id", help="NAME:VERSION")
        q.add_argument("-n", "--name", "--model-name", dest="name")
        q.add_argument("-v", "--version", type=int)
        if verb == "download":
            q.add_argument("-t", "--target-dir", dest="target_dir", default=".")
            q.add_argument("--overwrite", action="store_true")
        if verb == "update":
            q.add_argument("--add-tag", dest="add_tags", action="append", metavar="KEY=VALUE")
            q.add_argument("--remove-tag", dest="remove_tags", action="append", metavar="KEY")
            q.add_argument("--add-property", dest="add_properties", action="append", metavar="KEY=VALUE")
            q.add_argument("-d", "--description")
        _common(q, output=verb in ("show", "update"))
        q.set_defaults(func=_run(globals()[f"_model_{verb}"], f"model {verb}"))

    d = sub.add_parser("deploy", help="deploy models as a service (az ml model deploy)")
    d.add_argument("-n", "--name", required=True, help="the service name (3-32 of a-z, 0-9, '-')")
    _deploy_flags(d)
    _common(d, output=True)
    d.set_defaults(func=_run(_model_deploy, "model deploy"))
    return p


def _model_register(args: argparse.Namespace) -> int:
    ws = _ws(args)
    rec = ws.models.register(args.name, args.path, tags=_kv(args.tags, "tag"),
                             properties=_kv(args.properties, "property"), description=args.description,
                             model_framework=args.framework, model_framework_version=args.framework_version)
    emit(rec.to_json(), args.output, sys.stdout, MODEL_COLUMNS)
    return 0


def _filters(values: list[str] | None) -> dict[str, str | None]:
    return {k: (v if sep else None) for k, sep, v in (x.partition("=") for x in values or [])}


def _model_list(args: argparse.Namespace) -> int:
    ws = _ws(args)
    recs = ws.models.list(args.name, tags=_filters(args.tags) or None, properties=_filters(args.properties) or None,
                          latest=args.latest)
    emit([r.to_json() for r in recs], args.output, sys.stdout, MODEL_COLUMNS)
    return 0


def _model_show(args: argparse.Namespace) -> int:
    ws = _ws(args)
    emit(ws.models.get(*_model_ref(args)).to_json(), args.output, sys.stdout, MODEL_COLUMNS)
    return 0


def _model_download(args: argparse.Namespace) -> int:
    ws = _ws(args)
    name, version = _model_ref(args)
    path = ws.models.download(name, version, args.target_dir, exist_ok=args.overwrite)
    print(path)
    return 0


def _model_update(args: argparse.Namespace) -> int:
    ws = _ws(args)
    name, version = _model_ref(args)
    if version is None:
        version = ws.models.get(name).version
    rec = ws.models.update(name, version, add_tags=_kv(args.add_tags, "add-tag") or None,
                           remove_tags=args.remove_tags or None,
                           add_properties=_kv(args.add_properties, "add-property") or None,
                           description=args.description)
    emit(rec.to_json(), args.output, sys.stdout, MODEL_COLUMNS)
    return 0


def _model_delete(args: argparse.Namespace) -> int:
    ws = _ws(args)
    name, version = _model_ref(args)
    if version is None:
        raise DeployError("give the version to delete (-i NAME:VERSION or --version N)")
    ws.models.get(name, version)
    ws.models.delete(name, version)
    print(f"Deleted model {name}:{version}")
    return 0


def _model_deploy(args: argparse.Namespace) -> int:
    from openscore.deployer.lifecycle import ServiceManager, check_service_name
    check_service_name(args.name)
    ic = _inference(args.inference_config, args.environment_name, args.environment_version)
    dc = _deployment(args.deploy_config)
    ws = _ws(args)
    models = _models(ws, args.models)
    mgr = ServiceManager(ws)
    info = mgr.deploy(args.name, models, ic, dc, compute_target=args.compute_target, overwrite=args.overwrite,
                      rebuild=args.rebuild, description=args.description, tags=_kv(args.tags, "tag"),
                      properties=_kv(args.properties, "property"), log=_say)
    return _finish(mgr, info, args)


def _service_wait(args: argparse.Namespace) -> int:
    mgr = _manager(args)
    info = mgr.wait(args.name, timeout_s=args.timeout, show_output=True, log=_say)
    emit(info.to_json(), args.output, sys.stdout, SERVICE_COLUMNS)
    return 0


# ====================================================================== service
def add_service_command(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("service", help="deployed services: show, logs, keys, run, update (az ml service)")
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB", parser_class=_VerbParser)

    def verb(name: str, helptext: str, fn: Callable[[argparse.Namespace], int], *, output: bool = False,
             named: bool = True) -> argparse.ArgumentParser:
        q = sub.add_parser(name, help=helptext)
        if named:
            q.add_argument("-n", "--name", required=True, help="the service (or endpoint) name")
        _common(q, output=output)
        q.set_defaults(func=_run(fn, f"service {name}"))
        return q

    q = verb("list", "the workspace's services", _service_list, output=True, named=False)
    q.add_argument("--compute-type", dest="compute_type")
    q.add_argument("--model-name", dest="model_name")
    q.add_argument("--model-id", dest="model_id")
    q.add_argument("--tag", dest="tags", action="append", metavar="KEY[=VALUE]")
    q.add_argument("--property", dest="properties", action="append", metavar="KEY[=VALUE]")
    verb("show", "state, scoringUri, swaggerUri, models", _service_show, output=True)
    q = verb("get-logs", "each replica's log (crashed ones too)", _service_logs)
    q.add_argument("-l", "--num-lines", "--num_lines", dest="num_lines", type=int, default=5000)
    q.add_argument("-i", "--init", action="store_true", help="the lines up to the end of init()")
    verb("get-keys", "the primary and secondary keys", _service_keys, output=True)
    q = verb("regen-key", "regenerate (or set) a key", _service_regen, output=True)
    q.add_argument("-k", "--key", required=True, help="Primary or Secondary")
    q.add_argument("--set-key", "--sk", dest="set_key", help="the new value (default: a random one)")
    verb("get-access-token", "a token (tokenAuthEnabled services)", _service_token, output=True)
    q = verb("run", "score: POST the input to the service with its key", _service_run, output=True)
    q.add_argument("-d", "--input-data", dest="input_data", required=True, help="the request body, or @FILE")
    q = verb("update", "change a service: models, inference config, deploymentconfig keys", _service_update,
             output=True)
    _deploy_flags(q, update=True)
    q.add_argument("--remove-tag", dest="remove_tags", action="append", metavar="KEY")
    q.add_argument("--add-property", dest="add_properties", action="append", metavar="KEY=VALUE")
    q.add_argument("--version-name", "--vn", dest="version_name", help="aksendpoint: the version to change")
    verb("delete", "delete the service", _service_delete)
    q = verb("wait", "wait until the service is Healthy or Failed", _service_wait, output=True)
    q.add_argument("--timeout", type=float, default=None, help="seconds (default 900)")
    for vverb, helptext in (("create-version", "aksendpoint: add a version"),
                            ("update-version", "aksendpoint: change a version"),
                            ("delete-version", "aksendpoint: remove a version")):
        q = verb(vverb, helptext, _service_version, output=True)
        q.add_argument("--version-name", "--vn", dest="version_name", required=True)
        if vverb != "delete-version":
            q.add_argument("-m", "--model", dest="models", action="append", metavar="NAME:VERSION")
            q.add_argument("--ic", "-ic", "--inference-config-file", dest="inference_config", metavar="FILE")
            q.add_argument("--dc", "-dc", "--deploy-config-file", dest="deploy_config", metavar="FILE",
                           help="the version's deploymentconfig keys")
            q.add_argument("--traffic-percentile", "--tp", dest="traffic", type=float)
            q.add_argument("--is-default", dest="is_default", action="store_const", const=True, default=None)
            q.add_argument("--is-control-version-type", "--cvt", dest="is_control", action="store_const",
                           const=True, default=None)
            q.add_argument("--no-wait", action="store_true")
            q.add_argument("--timeout", type=float, default=None)
    return p


def _service_list(args: argparse.Namespace) -> int:
    mgr = _manager(args)
    infos = mgr.list(compute_type=args.compute_type, model_name=args.model_name, model_id=args.model_id,
                     tags=_filters(args.tags) or None, properties=_filters(args.properties) or None)
    emit([i.to_json() for i in infos], args.output, sys.stdout, SERVICE_COLUMNS)
    return 0


def _service_show(args: argparse.Namespace) -> int:
    emit(_manager(args).get(args.name).to_json(), args.output, sys.stdout, SERVICE_COLUMNS)
    return 0


def _service_logs(args: argparse.Namespace) -> int:
    sys.stdout.write(_manager(args).get_logs(args.name, num_lines=args.num_lines, init=args.init))
    return 0


def _service_keys(args: argparse.Namespace) -> int:
    primary, secondary = _manager(args).get_keys(args.name)
    emit({"primaryKey": primary, "secondaryKey": secondary}, args.output, sys.stdout)
    return 0


def _service_regen(args: argparse.Namespace) -> int:
    primary, secondary = _manager(args).regen_key(args.name, args.key, args.set_key)
    emit({"primaryKey": primary, "secondaryKey": secondary}, args.output, sys.stdout)
    return 0


def _service_token(args: argparse.Namespace) -> int:
    emit(_manager(args).get_access_token(args.name), args.output, sys.stdout)
    return 0


def _service_run(args: argparse.Namespace) -> int:
    data = args.input_data
    if data.startswith("@"):
        try:
            data = Path(data[1:]).read_bytes()
        except OSError as e:
            raise DeployError(f"-d {args.input_data}: cannot read the file: {e.strerror or e}") from None
    emit(_manager(args).run(args.name, data), args.output, sys.stdout)
    return 0


def _service_update(args: argparse.Namespace) -> int:
    ic = _inference(args.inference_config, args.environment_name, args.environment_version)
    dc = _deployment(args.deploy_config)
    mgr = _manager(args)
    models = _models(mgr.ws, args.models) if args.models else None
    info = mgr.update(args.name, models=models, inference_config=ic, deployment_config=dc,
                      rebuild=args.rebuild, description=args.description,
                      add_tags=_kv(args.tags, "tag") or None, remove_tags=args.remove_tags,
                      add_properties=_kv(args.add_properties, "add-property") or None,
                      version_name=args.version_name, log=_say)
    return _finish(mgr, info, args)


def _service_delete(args: argparse.Namespace) -> int:
    _manager(args).delete(args.name)
    print(f"Deleted service {args.name}")
    return 0


def _service_version(args: argparse.Namespace) -> int:
    mgr = _manager(args)
    if args.verb == "delete-version":
        info = mgr.delete_version(args.name, args.version_name)
        emit(info.to_json(), args.output, sys.stdout, SERVICE_COLUMNS)
        return 0
    ic = _inference(args.inference_config, None, None)
    changes: dict[str, Any] = {}
    if args.deploy_config:
        changes = _deployment(args.deploy_config).version_keys()
    models = _models(mgr.ws, args.models) if args.models else None
    if args.verb == "create-version":
        info = mgr.create_version(args.name, args.version_name, models or [], ic, changes=changes,
                                  traffic_percentile=args.traffic, is_default=args.is_default,
                                  is_control_version_type=args.is_control, log=_say)
    else:
        info = mgr.update_version(args.name, args.version_name, models=models, inference_config=ic,
                                  changes=changes or None, traffic_percentile=args.traffic,
                                  is_default=args.is_default, is_control_version_type=args.is_control, log=_say)
    return _finish(mgr, info, args)


# ====================================================================== environment
def add_environment_command(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("environment", help="register and list environments (az ml environment)")
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB", parser_class=_VerbParser)
    r = sub.add_parser("register", help="register an Environment definition (Azure's JSON)")
    r.add_argument("-d", "--directory", help="a folder holding azureml_environment.json (az ml's layout)")
    r.add_argument("-f", "--file", help="an Environment JSON or YAML file")
    r.add_argument("-n", "--name", help="override the definition's name")
    _common(r, output=True)
    r.set_defaults(func=_run(_env_register, "environment register"))
    lst = sub.add_parser("list", help="registered environments")
    _common(lst, output=True)
    lst.set_defaults(func=_run(_env_list, "environment list"))
    s = sub.add_parser("show", help="one environment")
    s.add_argument("-n", "--name", required=True)
    s.add_argument("-v", "--version")
    _common(s, output=True)
    s.set_defaults(func=_run(_env_show, "environment show"))
    return p


def _env_json(defn: Any) -> dict[str, Any]:
    doc = dict(defn.to_azure())
    doc["hash"] = defn.hash
    doc["packages"] = defn.resolved_packages()
    return doc


def _env_register(args: argparse.Namespace) -> int:
    from openscore.deployer.documents import load_document
    from openscore.deployer.environments import EnvironmentDefinition
    if bool(args.directory) == bool(args.file):
        raise DeployError("give one of -d/--directory (holding azureml_environment.json) or -f/--file")
    path = Path(args.file) if args.file else Path(args.directory) / "azureml_environment.json"
    doc = load_document(path, "environment definition")
    if args.name:
        doc["name"] = args.name
    defn = EnvironmentDefinition.from_azure(doc, path.absolute().parent)
    defn.resolved_packages()  # a conda-only package is refused before it is registered
    ws = _ws(args)
    emit(_env_json(ws.environments.register(defn)), args.output, sys.stdout, ENV_COLUMNS)
    return 0


def _env_list(args: argparse.Namespace) -> int:
    ws = _ws(args)
    emit([_env_json(d) for d in ws.environments.list()], args.output, sys.stdout, ENV_COLUMNS)
    return 0


def _env_show(args: argparse.Namespace) -> int:
    ws = _ws(args)
    emit(_env_json(ws.environments.get(args.name, args.version)), args.output, sys.stdout, ENV_COLUMNS)
    return 0


# ====================================================================== image
IMAGE_COLUMNS = ("name", "tag", "digest", "cached")


def add_image_command(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("image", help="container images of environments (needs openscore.images)")
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB", parser_class=_VerbParser)
    q = sub.add_parser("build", help="build a registered environment's image, once per hash (a cache hit when "
                                     "the registry or local storage already has it)")
    q.add_argument("-n", "--name", required=True, help="the registered environment")
    q.add_argument("-v", "--version", help="its version (default: the newest)")
    q.add_argument("--flavour", "--flavor", choices=("cpu", "cuda", "opencl"),
                   help="the runtime flavour (default: cuda when the environment asks for GPU support, else cpu)")
    q.add_argument("--base", help="the runtime image to build on (default: the FROM of the environment's "
                                  "docker.baseDockerfile, else its docker.baseImage, else localhost/openscore:FLAVOUR, "
                                  "which images/build.sh makes)")
    q.add_argument("--registry", help="push to this registry (host[:port]); default: local storage only, "
                                      "nothing is pushed")
    q.add_argument("--rebuild", action="store_true", help="build even when the image exists")
    _common(q, output=True)
    q.set_defaults(func=_run(_image_build, "image build"))
    q = sub.add_parser("list", help="images in a registry, or in local storage")
    q.add_argument("-n", "--name", help="only repositories whose name contains this")
    q.add_argument("--registry", help="the registry to list (default: local storage)")
    _common(q, output=True)
    q.set_defaults(func=_run(_image_list, "image list"))
    return p


def _images() -> Any:
    try:
        import openscore.images
    except ImportError:
        raise DeployError("container images need the images library (openscore.images), which is not installed "
                          "in this openscore; the local target runs services without images") from None
    return openscore.images


def _image_json(ref: Any) -> dict[str, Any]:
    return {"name": ref.name, "tag": ref.tag, "digest": ref.digest, "reference": ref.by_digest,
            "cached": ref.cached}


def environment_recipe(defn: Any, flavour: str | None = None, base: str | None = None) -> Any:
    """The openscore.images recipe of a deployer EnvironmentDefinition: its base image, docker steps and
    resolved pip packages (a user-managed environment installs none)."""
    images = _images()
    flavour = flavour or ("cuda" if defn.enable_gpu else "cpu")
    from_image, steps = _dockerfile_steps(defn.base_dockerfile or "", defn.name)
    steps += _dockerfile_steps(defn.docker_steps or "", defn.name, with_from=False)[1]
    packages = [] if defn.user_managed_dependencies else defn.resolved_packages()
    try:
        return images.EnvironmentRecipe(base_image=base or from_image or defn.base_image
                                        or f"localhost/openscore:{flavour}",
                                        docker_steps=tuple(steps), pip_packages=tuple(packages), flavour=flavour)
    except images.RecipeError as e:
        raise DeployError(f"environment {defn.name}: {e}") from None


def _dockerfile_steps(text: str, env: str, with_from: bool = True) -> tuple[str | None, list[str]]:
    """(the FROM image, the instructions after it) of a docker.baseDockerfile; continuation lines joined,
    comments dropped. One stage only: the environment's image is that stage plus the pip packages."""
    instructions: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        instructions.append(pending + line)
        pending = ""
    if pending.strip():
        instructions.append(pending.strip())
    from_image = None
    if with_from and instructions and instructions[0].split(None, 1)[0].upper() == "FROM":
        words = instructions.pop(0).split()
        if len(words) != 2:
            raise DeployError(f"environment {env}: the baseDockerfile's FROM line must name one image "
                              f"(no AS stage or --platform), not {' '.join(words)!r}")
        from_image = words[1]
    for step in instructions:
        if step.split(None, 1)[0].upper() == "FROM":
            raise DeployError(f"environment {env}: the baseDockerfile has more than one FROM: a multi-stage "
                              "Dockerfile cannot be an environment (build it as the runtime image and name it "
                              "in docker.baseImage)")
    return from_image, instructions


def build_environment_image(defn: Any, *, flavour: str | None = None, base: str | None = None,
                            registry: str | None = None, rebuild: bool = False,
                            progress: Callable[[str], None] = _say) -> Any:
    """Build (or find) the environment's image; each build step goes to `progress`. A failing step raises
    DeployError carrying that step's own output."""
    images = _images()
    recipe = environment_recipe(defn, flavour, base)
    progress(f"environment {defn.name} (version {defn.version}): image {recipe.reference(registry)}")
    try:
        return images.ensure_environment_image(recipe, registry=registry, rebuild=rebuild, progress=progress)
    except images.BuildError as e:
        raise DeployError(f"building environment {defn.name}'s image failed at {e.step or 'a build step'}; "
                          f"its output:\n{e.output}") from None
    except (images.ImageError, images.RecipeError) as e:
        raise DeployError(f"environment {defn.name}'s image: {e}") from None


def _image_build(args: argparse.Namespace) -> int:
    ws = _ws(args)
    defn = ws.environments.get(args.name, args.version)

    def progress(line: str) -> None:  # the steps on stderr, so stdout stays the JSON/table result
        print(f"  {line}", file=sys.stderr, flush=True)

    ref = build_environment_image(defn, flavour=args.flavour, base=args.base, registry=args.registry,
                                  rebuild=args.rebuild, progress=progress)
    emit(_image_json(ref), args.output, sys.stdout, IMAGE_COLUMNS)
    return 0


def _image_list(args: argparse.Namespace) -> int:
    images = _images()
    try:
        found = images.list_images(args.registry)
    except (images.ImageError, images.RecipeError) as e:
        raise DeployError(str(e)) from None
    rows = [_image_json(r) for r in found if not args.name or args.name in r.repository]
    emit(rows, args.output, sys.stdout, IMAGE_COLUMNS)
    return 0
