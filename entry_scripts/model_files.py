"""What every sample's make_model.py shares: Azure's registered-model layout and safe writes.

A make_model.py imports this with its parent folder on sys.path, so it runs both on its own
(`python entry_scripts/<sample>/make_model.py`) and through entry_scripts/make_models.py.
"""

import os
import shutil


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


def version_dir(out_root, name, version, entry):
    """azureml-models/<name>/<version>/, holding nothing but `entry` (Model.get_model_path requires
    exactly one file or folder per version folder); returns the path of `entry` in it."""
    d = os.path.join(out_root, "azureml-models", name, str(version))
    os.makedirs(d, exist_ok=True)
    for other in set(os.listdir(d)) - {entry}:
        if other.endswith(".tmp"):  # another build's save_bytes() in progress
            continue
        path = os.path.join(d, other)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)
    return os.path.join(d, entry)


def save_model_file(out_root, name, version, filename, data):
    """Save one registered model's single file as azureml-models/<name>/<version>/<filename>."""
    path = version_dir(out_root, name, version, filename)
    save_bytes(path, data)
    print(f"saved {path}")
    return path
