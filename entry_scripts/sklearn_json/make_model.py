"""Train the sklearn_json sample model and save it where Azure ML would mount it.

Ridge regression on the diabetes data set that ships inside scikit-learn (nothing is
downloaded). Output: ./azureml-models/sklearn_json/1/model.pkl (next to this file).

    python entry_scripts/sklearn_json/make_model.py
"""

import io
import os
import sys

import joblib
from sklearn.datasets import load_diabetes
from sklearn.linear_model import Ridge

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from model_files import save_model_file  # noqa: E402

MODEL_NAME = "sklearn_json"
MODEL_VERSION = 1


def main(out_root=HERE):
    X, y = load_diabetes(return_X_y=True)
    model = Ridge(alpha=0.5).fit(X, y)

    buf = io.BytesIO()
    joblib.dump(model, buf)
    return save_model_file(out_root, MODEL_NAME, MODEL_VERSION, "model.pkl", buf.getvalue())


if __name__ == "__main__":
    main()
