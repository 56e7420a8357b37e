"""`LocalWebservice` (spec 2.3): computeType local, served by the workspace's router on this machine.

Azure runs a local service as a Docker container on `port`; openscore runs it behind the workspace's
router (started on `port` when it is not running yet), so its URIs are the router's.
"""

from __future__ import annotations

from typing import ClassVar

from openscore.sdk.deploy_configuration import LocalWebserviceDeploymentConfiguration
from openscore.sdk.exceptions import WebserviceException
from openscore.sdk.webservice import Webservice


class LocalWebservice(Webservice):
    """A service of computeType local."""

    _webservice_type: ClassVar[str] = "Local"
    _compute_types: ClassVar[tuple[str, ...]] = ("local",)

    @staticmethod
    def deploy_configuration(port: int | None = None) -> LocalWebserviceDeploymentConfiguration:
        if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536):
            raise WebserviceException(f"Error, port must be an int between 1 and 65535, got {port!r}")
        config = LocalWebserviceDeploymentConfiguration(port=port)
        config.validate_configuration()
        return config

    @property
    def port(self) -> int | None:
        from urllib.parse import urlsplit
        return urlsplit(self.scoring_uri).port if self.scoring_uri else None
