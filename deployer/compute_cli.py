"""`openscore compute attach|list|show|detach` and `openscore cluster install|uninstall`.

Kept apart from cli.py so the model/service commands never load the Kubernetes client; these load it only
when they run. Failures are one line on stderr and exit 1, as in cli.py.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from openscore.deployer.cli import _common, _run, _say, _VerbParser, _ws
from openscore.deployer.errors import DeployError
from openscore.deployer.output import emit

COMPUTE_COLUMNS = ("name", "computeType", "namespace", "registry", "serverVersion", "createdTime")


def _registry(args: argparse.Namespace) -> Any:
    from openscore.deployer.computes import ComputeRegistry
    return ComputeRegistry(_ws(args))


def add_compute_command(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("compute", help="attach Kubernetes clusters to deploy to (az ml computetarget)")
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB", parser_class=_VerbParser)
    a = sub.add_parser("attach", help="attach a cluster by its kubeconfig (checks that it answers)")
    a.add_argument("-n", "--name", required=True)
    a.add_argument("--kubeconfig", "-k", required=True, help="the kubeconfig file")
    a.add_argument("--context", help="its context (default: the current one)")
    a.add_argument("--namespace", help="where services and the router live (default: openscore)")
    a.add_argument("--registry", help="HOST[:PORT] of the registry the cluster pulls app images from")
    a.add_argument("--runtime-image", help="the base of app images (default: <registry>/openscore:cpu)")
    a.add_argument("--instance-types", help="a YAML/JSON file of Azure InstanceType documents")
    a.add_argument("--fpga-resource", help="the extended resource FPGA instance types request")
    _common(a, output=True)
    a.set_defaults(func=_run(_attach, "compute attach"))
    lst = sub.add_parser("list", help="attached computes")
    _common(lst, output=True)
    lst.set_defaults(func=_run(_list, "compute list"))
    for verb, helptext in (("show", "one compute, with its instance types"),
                           ("detach", "forget a compute (refused while services are deployed there)")):
        q = sub.add_parser(verb, help=helptext)
        q.add_argument("-n", "--name", required=True)
        _common(q, output=True)
        q.set_defaults(func=_run(globals()[f"_{verb}"], f"compute {verb}"))
    return p


def _attach(args: argparse.Namespace) -> int:
    compute = _registry(args).attach(args.name, args.kubeconfig, context=args.context, namespace=args.namespace,
                                     registry=args.registry, instance_types_file=args.instance_types,
                                     fpga_resource=args.fpga_resource, runtime_image=args.runtime_image)
    print(f"attached {compute.name}: Kubernetes {compute.server_version}", file=sys.stderr)
    emit(compute.to_json(), args.output, sys.stdout, COMPUTE_COLUMNS)
    return 0


def _list(args: argparse.Namespace) -> int:
    emit([c.to_json() for c in _registry(args).list()], args.output, sys.stdout, COMPUTE_COLUMNS)
    return 0


def _show(args: argparse.Namespace) -> int:
    emit(_registry(args).get(args.name).to_json(), args.output, sys.stdout, COMPUTE_COLUMNS)
    return 0


def _detach(args: argparse.Namespace) -> int:
    compute = _registry(args).detach(args.name)
    emit(compute.to_json(), args.output, sys.stdout, COMPUTE_COLUMNS)
    return 0


# ====================================================================== cluster
def add_cluster_command(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("cluster", help="install or remove openscore (CRD, router) in a compute's cluster")
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB", parser_class=_VerbParser)
    i = sub.add_parser("install", help="apply the namespace, CRD, router and its least-privilege Role")
    i.add_argument("-n", "--name", required=True, help="the attached compute")
    i.add_argument("--router-image", help="the router's image (default: <registry>/openscore:cpu)")
    i.add_argument("--replicas", type=int, default=1,
                   help="router pods (default 1; Azure runs 3 azureml-fe pods): each service is coordinated by one "
                        "of them, see docs/router-ha.md")
    _common(i)
    i.set_defaults(func=_run(_install, "cluster install"))
    u = sub.add_parser("uninstall", help="remove what install applied")
    u.add_argument("-n", "--name", required=True, help="the attached compute")
    u.add_argument("--keep-crd", action="store_true",
                   help="leave the ScoringService CRD (other namespaces may use it)")
    _common(u)
    u.set_defaults(func=_run(_uninstall, "cluster uninstall"))
    return p


def _install(args: argparse.Namespace) -> int:
    from openscore.deployer.computes import run_async, with_client
    from openscore.kube.install import InstallOptions, install
    if args.replicas < 1:
        raise DeployError(f"--replicas {args.replicas} must be at least 1")
    compute = _registry(args).get(args.name)
    image = args.router_image or (f"{compute.registry}/openscore:cpu" if compute.registry else None)
    if image is None:
        raise DeployError(f"compute {compute.name} has no registry: give --router-image")
    opts = InstallOptions(namespace=compute.namespace, router_image=image, replicas=args.replicas)
    changed = run_async(with_client(compute, lambda c: install(c, opts, log=_say)))
    if not changed:
        _say(f"nothing to change: openscore is installed in namespace {compute.namespace}")
    return 0


def _uninstall(args: argparse.Namespace) -> int:
    from openscore.deployer.computes import run_async, with_client
    from openscore.kube.install import uninstall
    compute = _registry(args).get(args.name)
    removed = run_async(with_client(compute, lambda c: uninstall(c, compute.namespace, keep_crd=args.keep_crd,
                                                                   log=_say)))
    if not removed:
        _say(f"nothing to remove in namespace {compute.namespace}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Both commands on their own (`python -m openscore.deployer.compute_cli compute ...`), until the
    `openscore.commands` entry points list them."""
    parser = argparse.ArgumentParser(prog="openscore")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_compute_command(sub)
    add_cluster_command(sub)
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
