"""Train the numpy_schema sample model: a logistic-regression iris classifier.

Uses the iris data set that ships inside scikit-learn (nothing is downloaded).
Output: ./azureml-models/numpy_schema/1/model.pkl (next to this file).

    python entry_scripts/numpy_schema/make_model.py
"""

import io
import os
import sys

import joblib
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from model_files import save_model_file  # noqa: E402

MODEL_NAME = "numpy_schema"
MODEL_VERSION = 1


def main(out_root=HERE):
    X, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=1000).fit(X, y)

    buf = io.BytesIO()
    joblib.dump(model, buf)
    return save_model_file(out_root, MODEL_NAME, MODEL_VERSION, "model.pkl", buf.getvalue())


if __name__ == "__main__":
    main()
