"""openscore.deployer: Azure ML v1's model registry, environments and deploy lifecycle on a local workspace.

A workspace (openscore.deployer.workspace) is a folder holding an SQLite database and a content-addressed
artifact store; the registries (models, environments) and the service lifecycle read and write it. Nothing
here is imported by the scoring server or the router: the deployer talks to the router over its admin API.
"""

from openscore.deployer.errors import ConflictError, DeployError, NotFoundError

__all__ = ["ConflictError", "DeployError", "NotFoundError"]
