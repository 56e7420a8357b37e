# Entry script with an inference-schema contract: the request body must be
# {"data": [[sepal_length, sepal_width, petal_length, petal_width], ...]}.
# The decorators turn the JSON list into a float64 numpy array of shape (n, 4)
# before run() sees it, and describe the API in GET /swagger.json.
import os

import joblib
import numpy as np
from inference_schema.parameter_types.numpy_parameter_type import NumpyParameterType
from inference_schema.schema_decorators import input_schema, output_schema


def init():
    global model
    # AZUREML_MODEL_DIR points at ./azureml-models/$MODEL_NAME/$VERSION
    model_path = os.path.join(os.getenv("AZUREML_MODEL_DIR"), "model.pkl")
    model = joblib.load(model_path)


input_sample = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]])
output_sample = np.array([0, 2])


@input_schema("data", NumpyParameterType(input_sample))
@output_schema(NumpyParameterType(output_sample))
def run(data):
    # data is a numpy.ndarray here; a wrong width or a non-numeric value is
    # rejected by the decorator before this line runs (the server answers 500).
    result = model.predict(data)
    # numpy arrays are not JSON-serializable: return a list
    return result.tolist()
