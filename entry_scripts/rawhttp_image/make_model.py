"""Create the rawhttp_image sample "model": a 3x3 convolution kernel plus the default
thumbnail size, stored as a .npz file.

Output: ./azureml-models/rawhttp_image/1/kernel.npz (next to this file).

    python entry_scripts/rawhttp_image/make_model.py
"""

import io
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL_NAME = "rawhttp_image"
MODEL_VERSION = 1

# edge-enhancing kernel (sums to 1, so flat regions keep their brightness)
KERNEL = np.array([[-1, -1, -1],
                   [-1, 10, -1],
                   [-1, -1, -1]], dtype=np.float64) / 2.0
DEFAULT_SIZE = 64


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
    model_dir = os.path.join(out_root, "azureml-models", MODEL_NAME, str(MODEL_VERSION))
    os.makedirs(model_dir, exist_ok=True)
    path = os.path.join(model_dir, "kernel.npz")
    buf = io.BytesIO()
    np.savez(buf, kernel=KERNEL, default_size=np.int64(DEFAULT_SIZE))
    save_bytes(path, buf.getvalue())
    print(f"saved {path}")
    return path


if __name__ == "__main__":
    main()
