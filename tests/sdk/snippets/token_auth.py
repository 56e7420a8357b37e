# ruff: noqa
# mypy: ignore-errors
# (Azure's snippets as its docs write them: their import order and style are kept on purpose.)
# Azure's "Deploy a model to an Azure Kubernetes Service cluster", section "Authentication with tokens".
from azureml.core import Environment, Workspace
from azureml.core.model import InferenceConfig, Model
from azureml.core.webservice import AksWebservice

ws = Workspace.from_config()
model = Model.register(ws, model_name="mymodel", model_path="sklearn_regression_model.pkl")
inference_config = InferenceConfig(entry_script="score.py", source_directory="src",
                                   environment=Environment(name="myenv"))

# --- the page's snippets
deployment_config = AksWebservice.deploy_configuration(cpu_cores=1, memory_gb=1, token_auth_enabled=True)
service = Model.deploy(ws, "tokenservice", [model], inference_config, deployment_config)
service.wait_for_deployment(show_output=True)

token, refresh_by = service.get_token()
print(token)

# --- the token is what the scoring URI takes
print("refresh_by:", refresh_by.isoformat())
print("scoring_uri:", service.scoring_uri)
