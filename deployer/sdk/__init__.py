"""openscore.sdk: Azure ML v1's deploy-side Python SDK (azureml-core's names) over openscore.deployer.

    from openscore.sdk import Workspace, Model, Environment, InferenceConfig, AksWebservice
    ws = Workspace.from_config()
    model = Model.register(ws, model_path="model.pkl", model_name="mymodel")
    service = Model.deploy(ws, "myservice", [model], InferenceConfig(entry_script="score.py"),
                           AksWebservice.deploy_configuration(cpu_cores=1, memory_gb=1))
    service.wait_for_deployment(show_output=True)

The same classes answer at Azure's import paths (`from azureml.core import Workspace`) for a script run with
`openscore azureml run script.py` (openscore.sdk.cli), when azureml-core itself is not installed.
"""

from openscore.sdk.aks import AksEndpoint, AksWebservice
from openscore.sdk.compute import AksCompute, ComputeTarget
from openscore.sdk.conda_dependencies import CondaDependencies
from openscore.sdk.environment import Environment
from openscore.sdk.exceptions import (
    AzureMLException,
    ComputeTargetException,
    ModelNotFoundException,
    UserErrorException,
    WebserviceException,
)
from openscore.sdk.inference_config import InferenceConfig
from openscore.sdk.local import LocalWebservice
from openscore.sdk.model import Model
from openscore.sdk.webservice import Webservice
from openscore.sdk.workspace import Workspace

__all__ = ["AksCompute", "AksEndpoint", "AksWebservice", "AzureMLException", "ComputeTarget",
           "ComputeTargetException", "CondaDependencies", "Environment", "InferenceConfig", "LocalWebservice",
           "Model", "ModelNotFoundException", "UserErrorException", "Webservice", "WebserviceException",
           "Workspace"]
