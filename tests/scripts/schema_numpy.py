"""@input_schema / @output_schema script, as Azure's numpy samples."""
import numpy as np
from inference_schema.parameter_types.numpy_parameter_type import NumpyParameterType
from inference_schema.parameter_types.standard_py_parameter_type import StandardPythonParameterType
from inference_schema.schema_decorators import input_schema, output_schema


def init():
    pass


@input_schema("data", NumpyParameterType(np.array([[1.0, 2.0, 3.0]])))
@input_schema("scale", StandardPythonParameterType(1.0))
@output_schema(StandardPythonParameterType([1.0]))
def run(data, scale=2.0):
    assert isinstance(data, np.ndarray)
    return (data.sum(axis=1) * scale).tolist()
