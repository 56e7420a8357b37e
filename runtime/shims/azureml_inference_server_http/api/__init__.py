"""`aml_request` / `aml_response` here are the very same module objects as azureml.contrib.services'.

They have no files: runtime.shim_loader aliases them, so `@rawhttp` from either path sets one flag.
"""
