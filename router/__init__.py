"""openscore's router: the front end for many services (Azure azureml-fe's counterpart)."""
