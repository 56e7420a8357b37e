"""Train a small wine classifier with scikit-learn and export it to ONNX with skl2onnx.

Data: the wine data set that ships inside scikit-learn (nothing is downloaded).
Output: ./azureml-models/onnx_model/1/model.onnx (next to this file).

    python entry_scripts/onnx_model/make_model.py
"""

import os

from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType
from sklearn.datasets import load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL_NAME = "onnx_model"
MODEL_VERSION = 1
# opsets that every onnxruntime >= 1.17 runs
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}


def save_bytes(path, data):
    """Write atomically, and not at all when the file already holds these bytes, so that a
    server reading the model (or a second build running at the same time) never sees half a file."""
    try:
        with open(path, "rb") as f:
            if f.read() == data:
                return
    except FileNotFoundError:
        pass
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def main(out_root=HERE):
    X, y = load_wine(return_X_y=True)
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, y)

    onx = to_onnx(
        pipeline,
        initial_types=[("float_input", FloatTensorType([None, X.shape[1]]))],
        options={LogisticRegression: {"zipmap": False}},  # probabilities as a plain tensor
        target_opset=TARGET_OPSET,
    )
    # a fixed producer version keeps the file byte-for-byte reproducible
    onx.producer_version = "openscore-sample"

    model_dir = os.path.join(out_root, "azureml-models", MODEL_NAME, str(MODEL_VERSION))
    os.makedirs(model_dir, exist_ok=True)
    path = os.path.join(model_dir, "model.onnx")
    save_bytes(path, onx.SerializeToString())
    print(f"saved {path}")
    return path


if __name__ == "__main__":
    main()
