"""A `Workspace` placeholder so `from azureml.core import Workspace, Model` still imports.

Scoring containers have no workspace credentials; any use fails with an explanation.
"""

from typing import Any, NoReturn

from azureml.exceptions import UserErrorException

_NO_WORKSPACE = ("Azure ML workspace access is not available in openscore: the azureml.core shim only supports "
                 "Model.get_model_path() on the local azureml-models/ folder. Install azureml-core to use workspaces.")


def _unavailable(*args: Any, **kwargs: Any) -> NoReturn:
    raise UserErrorException(_NO_WORKSPACE)


class Workspace:
    """Placeholder: constructing or loading a workspace raises UserErrorException."""

    __init__ = _unavailable
    from_config = staticmethod(_unavailable)
    get = staticmethod(_unavailable)
    create = staticmethod(_unavailable)
