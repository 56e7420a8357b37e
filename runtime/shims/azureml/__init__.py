"""openscore stand-in for the `azureml` namespace, used only when no real azureml package is installed."""
