"""Azure's `azureml` import path, served by openscore.sdk (put first on sys.path by `openscore azureml run`)."""
