"""Train the sklearn_json sample model and save it where Azure ML would mount it.

Ridge regression on the diabetes data set that ships inside scikit-learn (nothing is
downloaded). Output: ./azureml-models/sklearn_json/1/model.pkl (next to this file).

    python entry_scripts/sklearn_json/make_model.py
"""

import io
import os

import joblib
from sklearn.datasets import load_diabetes
from sklearn.linear_model import Ridge

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL_NAME = "sklearn_json"
MODEL_VERSION = 1


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
    X, y = load_diabetes(return_X_y=True)
    model = Ridge(alpha=0.5).fit(X, y)

    model_dir = os.path.join(out_root, "azureml-models", MODEL_NAME, str(MODEL_VERSION))
    os.makedirs(model_dir, exist_ok=True)
    path = os.path.join(model_dir, "model.pkl")
    buf = io.BytesIO()
    joblib.dump(model, buf)
    save_bytes(path, buf.getvalue())
    print(f"saved {path}")
    return path


if __name__ == "__main__":
    main()
