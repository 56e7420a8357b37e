# Entry script serving an ONNX model with onnxruntime.
#   POST {"data": [[13 wine features], ...]}
#   -> {"label": [...], "probabilities": [[p0, p1, p2], ...]}
import json
import os

import numpy as np
import onnxruntime
from azureml.contrib.services.aml_response import AMLResponse


def init():
    global session, input_name, output_names
    # AZUREML_MODEL_DIR points at ./azureml-models/$MODEL_NAME/$VERSION
    model_path = os.path.join(os.getenv("AZUREML_MODEL_DIR"), "model.onnx")
    session = onnxruntime.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    output_names = [o.name for o in session.get_outputs()]
    print(f"ONNX model {model_path}: input {input_name} {session.get_inputs()[0].shape}, outputs {output_names}")


def run(raw_data):
    try:
        data = np.array(json.loads(raw_data)["data"], dtype=np.float32)
    except (ValueError, KeyError, TypeError) as e:
        # bad request: answer 400 ourselves instead of a 200 carrying an error string
        return AMLResponse(f"Bad input, expected {{\"data\": [[...13 numbers...], ...]}}: {e!r}", 400)

    # onnxruntime raises on a wrong shape: that is a 500 from the server
    label, probabilities = session.run(output_names, {input_name: data})
    return {"label": label.tolist(), "probabilities": probabilities.tolist()}
