"""Create the two registered models of the multi_model sample, in the layout Azure ML
uses when a service has several models (AZUREML_MODEL_DIR = azureml-models):

    azureml-models/iris_scaler/1/preprocessing/scaler.pkl       (a folder model)
    azureml-models/iris_scaler/1/preprocessing/metadata.json
    azureml-models/iris_classifier/1/model.pkl                  (baseline: most frequent class)
    azureml-models/iris_classifier/2/model.pkl                  (logistic regression on scaled features)

Data: the iris set that ships inside scikit-learn (nothing is downloaded).

    python entry_scripts/multi_model/make_model.py
"""

import io
import json
import os
import sys

import joblib
from sklearn.datasets import load_iris
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from model_files import save_bytes, version_dir  # noqa: E402


def _pickle(model):
    buf = io.BytesIO()
    joblib.dump(model, buf)
    return buf.getvalue()


def main(out_root=HERE):
    iris = load_iris()
    X, y = iris.data, iris.target

    scaler = StandardScaler().fit(X)
    Xs = scaler.transform(X)
    baseline = DummyClassifier(strategy="most_frequent").fit(Xs, y)
    classifier = LogisticRegression(C=10.0, max_iter=1000).fit(Xs, y)

    pre = version_dir(out_root, "iris_scaler", 1, "preprocessing")
    os.makedirs(pre, exist_ok=True)
    save_bytes(os.path.join(pre, "scaler.pkl"), _pickle(scaler))
    metadata = {"features": list(iris.feature_names), "classes": list(iris.target_names)}
    save_bytes(os.path.join(pre, "metadata.json"), json.dumps(metadata, indent=2).encode())

    paths = [pre]
    for version, model in ((1, baseline), (2, classifier)):
        path = version_dir(out_root, "iris_classifier", version, "model.pkl")
        save_bytes(path, _pickle(model))
        paths.append(path)
    for p in paths:
        print(f"saved {p}")
    return paths


if __name__ == "__main__":
    main()
