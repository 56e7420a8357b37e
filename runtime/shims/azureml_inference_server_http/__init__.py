"""openscore stand-in for azureml-inference-server-http: only its `api` import paths for entry scripts."""
