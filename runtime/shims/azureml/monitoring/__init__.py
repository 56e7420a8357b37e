"""openscore stand-in for azureml-monitoring, whose native library no longer loads on current systems (spec 4.4)."""

from ._modeldatacollector import ModelDataCollector

__all__ = ["ModelDataCollector"]
