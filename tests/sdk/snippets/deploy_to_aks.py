# ruff: noqa
# mypy: ignore-errors
# (Azure's snippets as its docs write them: their import order and style are kept on purpose.)
# Azure's "Deploy a model to an Azure Kubernetes Service cluster", section "Deploy to AKS" (Python tab).
# The page assumes `ws`, `model` and `inference_config` are set as in "How and where to deploy models";
# here `ws` comes from the config.json beside this script's working directory.
from azureml.core import Environment, Workspace
from azureml.core.model import InferenceConfig, Model

ws = Workspace.from_config()
model = Model.register(ws, model_name="mymodel", model_path="sklearn_regression_model.pkl")
env = Environment(name="myenv")
inference_config = InferenceConfig(entry_script="score.py", source_directory="src", environment=env)

# --- the page's snippet (its cluster name "myaks" is the attached target's: `local` on this machine)
from azureml.core.compute import AksCompute
from azureml.core.webservice import AksWebservice, Webservice
from azureml.core.model import Model

aks_target = AksCompute(ws,"local")
# If deploying to a cluster configured for dev/test, ensure that it was created with enough
# cores and memory to handle this deployment configuration. Note that memory is also used by
# things such as dependencies and AML components.
deployment_config = AksWebservice.deploy_configuration(cpu_cores = 1, memory_gb = 1)
service = Model.deploy(ws, "myservice", [model], inference_config, deployment_config, aks_target)
service.wait_for_deployment(show_output = True)
print(service.state)
print(service.get_logs())

# --- "Authentication with keys"
primary, secondary = service.get_keys()
print(primary)

# --- what a user does next: score it (the page's "Consume" link), and find it again by name
import json
print("scoring_uri:", service.scoring_uri)
print("prediction:", service.run(json.dumps({"data": [[0.038, 0.051, 0.062, 0.022, -0.044, -0.035, -0.043,
                                                         -0.003, 0.020, -0.018]]})))
again = Webservice(ws, "myservice")
print("found again:", type(again).__name__, again.state)
