"""openscore stand-in for azureml-contrib-services: entry scripts import rawhttp/AMLResponse from here."""

from .aml_request import rawhttp

__all__ = ["rawhttp"]
