"""openscore stand-in for `azureml.contrib`, used only when no real azureml-contrib-* package is installed."""
