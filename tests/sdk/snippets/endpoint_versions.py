# ruff: noqa
# mypy: ignore-errors
# (Azure's snippets as its docs write them: their import order and style are kept on purpose.)
# Azure's "Deploy a model to an Azure Kubernetes Service cluster", section "Deploy models to AKS using
# controlled rollout (preview)": create an endpoint, add a version, update it, delete it.
# The page's typos are fixed where Python refuses them (`import azureml.core,`, the indented
# `endpoint = ...` lines, `wait_for_deployment(true)`); `namespace_name` is unused on the page.
from azureml.core import Environment, Workspace
from azureml.core.model import InferenceConfig, Model

ws = Workspace.from_config()
model = Model.register(ws, model_name="mymodel", model_path="sklearn_regression_model.pkl")
inference_config = InferenceConfig(entry_script="score.py", source_directory="src",
                                   environment=Environment(name="myenv"))

# --- "Create an endpoint"
import azureml.core
from azureml.core.webservice import AksEndpoint
from azureml.core.compute import AksCompute
from azureml.core.compute import ComputeTarget
# select a created compute
compute = ComputeTarget(ws, 'local')
# define the endpoint and version name
endpoint_name = "mynewendpoint"
version_name= "versiona"
# create the deployment config and define the scoring traffic percentile for the first deployment
endpoint_deployment_config = AksEndpoint.deploy_configuration(cpu_cores = 0.1, memory_gb = 0.2,
                                                              enable_app_insights = True,
                                                              tags = {'sckitlearn':'demo'},
                                                              description = "testing versions",
                                                              version_name = version_name,
                                                              traffic_percentile = 20)
# deploy the model and endpoint
endpoint = Model.deploy(ws, endpoint_name, [model], inference_config, endpoint_deployment_config, compute)
# Wait for he process to complete
endpoint.wait_for_deployment(True)
print("after create:", {n: (v.traffic_percentile, v.is_default) for n, v in endpoint.versions.items()})

# --- "Update and add versions to an endpoint"
from azureml.core.webservice import AksEndpoint

# add another model deployment to the same endpoint as above
version_name_add = "versionb"
endpoint.create_version(version_name = version_name_add,
                        inference_config=inference_config,
                        models=[model],
                        tags = {'modelVersion':'b'},
                        description = "my second version",
                        traffic_percentile = 10)
endpoint.wait_for_deployment(True)
print("after create_version:", {n: (v.traffic_percentile, v.is_default) for n, v in endpoint.versions.items()})

from azureml.core.webservice import AksEndpoint

# update the version's scoring traffic percentage and if it is a default or control type
endpoint.update_version(version_name=endpoint.versions["versionb"].name,
                        description="my second version update",
                        traffic_percentile=40,
                        is_default=True,
                        is_control_version_type=True)
# Wait for the process to complete before deleting
endpoint.wait_for_deployment(True)
print("after update_version:", {n: (v.traffic_percentile, v.is_default, v.version_type)
                                for n, v in endpoint.versions.items()})
print("scoring_uri:", endpoint.scoring_uri)
# delete a version in an endpoint
endpoint.delete_version(version_name="versionb")
print("after delete_version:", sorted(endpoint.versions))
