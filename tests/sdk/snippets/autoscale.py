# ruff: noqa
# mypy: ignore-errors
# (Azure's snippets as its docs write them: their import order and style are kept on purpose.)
# Azure's "Deploy a model to an Azure Kubernetes Service cluster", section "Autoscaling".
from azureml.core import Environment, Workspace
from azureml.core.model import InferenceConfig, Model
from azureml.core.webservice import AksWebservice

ws = Workspace.from_config()
model = Model.register(ws, model_name="mymodel", model_path="sklearn_regression_model.pkl")
inference_config = InferenceConfig(entry_script="score.py", source_directory="src",
                                   environment=Environment(name="myenv"))

# --- the page's snippet
aks_config = AksWebservice.deploy_configuration(autoscale_enabled=True,
                                                autoscale_target_utilization=30,
                                                autoscale_min_replicas=1,
                                                autoscale_max_replicas=4)

# --- deployed as in "Deploy to AKS"; the settings reach the service
service = Model.deploy(ws, "autoscaled", [model], inference_config, aks_config)
service.wait_for_deployment(show_output=True)
print(service.state)
from math import ceil
# target requests per second
targetRps = 20
# time to process the request (in seconds)
reqTime = 10
# Maximum requests per container
maxReqPerContainer = 1
# target_utilization. 70% in this example
targetUtilization = .7

concurrentRequests = targetRps * reqTime / targetUtilization

# Number of container replicas
replicas = ceil(concurrentRequests / maxReqPerContainer)
print("replicas:", replicas)
