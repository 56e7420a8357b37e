"""`Model.get_model_path`, the one azureml-core call scoring scripts make (spec 1.10).

Same lookup as azureml-core's `_get_model_path_local`: `$AML_APP_ROOT/azureml-models/<name>/<version>/<entry>`
(AML_APP_ROOT unset = the working directory, and the path then stays relative, as in azureml-core),
falling back to `./<name>`. Workspace downloads are not available, so `_workspace` is not used.
"""

import os

from azureml.exceptions import ModelNotFoundException, WebserviceException
from azureml.core.workspace import _NO_WORKSPACE


def _models_dir() -> str:
    # Read at call time (azureml-core reads it at import) so a server that sets AML_APP_ROOT late still works.
    return os.path.join(os.environ.get("AML_APP_ROOT", ""), "azureml-models")


class Model:
    """Registered-model access inside a scoring container; only `get_model_path` is supported."""

    def __init__(self, workspace: object = None, name: str | None = None, *args: object, **kwargs: object) -> None:
        raise WebserviceException(_NO_WORKSPACE)

    @staticmethod
    def get_model_path(model_name: str, version: int | None = None, _workspace: object = None) -> str:
        """Return the path of the model's file or folder: the latest integer version unless `version` is given.

        Raises WebserviceException for a non-int version or a version folder that does not hold exactly one
        entry, and ModelNotFoundException (a WebserviceException) when the model is nowhere to be found.
        """
        if version is not None and (not isinstance(version, int) or isinstance(version, bool)):
            raise WebserviceException(f"version should be an int, got {version!r} ({type(version).__name__})")
        if not isinstance(model_name, str) or not model_name:
            raise WebserviceException(f"model_name should be a non-empty str, got {model_name!r}")
        models_dir = _models_dir()
        model_dir = os.path.join(models_dir, model_name)
        if not os.path.isdir(model_dir):
            return _from_working_dir(model_name, models_dir, version)
        if version is None:
            version = _latest_version(model_dir)
        version_dir = os.path.join(model_dir, str(version))
        if not os.path.isdir(version_dir):
            return _from_working_dir(model_name, models_dir, version)
        entries = sorted(os.listdir(version_dir))
        if len(entries) != 1:
            raise WebserviceException(f"Dir {version_dir} can contain only 1 file or folder. Found {entries}")
        return os.path.join(version_dir, entries[0])


def _latest_version(model_dir: str) -> int:
    names = os.listdir(model_dir)
    if not names:
        raise WebserviceException(f"Model folder {model_dir} has no version folders")
    try:
        return max(int(name) for name in names)
    except ValueError:
        raise WebserviceException(
            f"Model folder {model_dir} may only hold integer version folders, found {sorted(names)}") from None


def _from_working_dir(model_name: str, models_dir: str, version: int | None) -> str:
    if os.path.exists(model_name):
        return model_name
    wanted = model_name if version is None else f"{model_name} version {version}"
    raise ModelNotFoundException(
        f"Model {wanted} not found in cache at {os.path.abspath(models_dir)} or in current working directory "
        f"{os.getcwd()}. Expected the layout azureml-models/<model_name>/<version>/<model file or folder>; "
        "downloading models from a workspace is not available in openscore.")
