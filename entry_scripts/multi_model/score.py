# Entry script for a service deployed with two registered models.
# With several models, AZUREML_MODEL_DIR is ./azureml-models and each model is
# found with Model.get_model_path(name[, version]):
#   azureml-models/<name>/<version>/<registered file or folder>
import json
import os

import joblib
import numpy as np
from azureml.core.model import Model


def init():
    global scaler, classifier, features, classes
    print("AZUREML_MODEL_DIR =", os.getenv("AZUREML_MODEL_DIR"))

    # a folder model, pinned to version 1: the path of the registered folder comes back
    preprocessing_dir = Model.get_model_path("iris_scaler", version=1)
    scaler = joblib.load(os.path.join(preprocessing_dir, "scaler.pkl"))
    with open(os.path.join(preprocessing_dir, "metadata.json")) as f:
        metadata = json.load(f)
    features, classes = metadata["features"], metadata["classes"]

    # a single-file model, no version given: the latest registered version is used
    classifier_path = Model.get_model_path("iris_classifier")
    classifier = joblib.load(classifier_path)
    print("classifier loaded from", classifier_path)


def run(raw_data):
    # {"data": [[5.1, 3.5, 1.4, 0.2], ...]} or rows as {"sepal length (cm)": 5.1, ...}
    try:
        rows = json.loads(raw_data)["data"]
        rows = [[row[name] for name in features] if isinstance(row, dict) else row for row in rows]
        data = scaler.transform(np.array(rows, dtype=float))
        predicted = classifier.predict(data)
        return {
            "predictions": predicted.tolist(),
            "species": [classes[i] for i in predicted],
            "probabilities": classifier.predict_proba(data).round(6).tolist(),
        }
    except Exception as e:
        result = str(e)
        return {"error": result}
