"""Train a small wine classifier with scikit-learn and export it to ONNX with skl2onnx.

Data: the wine data set that ships inside scikit-learn (nothing is downloaded).
Output: ./azureml-models/onnx_model/1/model.onnx (next to this file).

    python entry_scripts/onnx_model/make_model.py
"""

import os
import sys

from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType
from sklearn.datasets import load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from model_files import save_model_file  # noqa: E402

MODEL_NAME = "onnx_model"
MODEL_VERSION = 1
# opsets that every onnxruntime >= 1.17 runs
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}


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

    return save_model_file(out_root, MODEL_NAME, MODEL_VERSION, "model.onnx", onx.SerializeToString())


if __name__ == "__main__":
    main()
