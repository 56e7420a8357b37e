"""Create the rawhttp_image sample "model": a 3x3 convolution kernel plus the default
thumbnail size, stored as a .npz file.

Output: ./azureml-models/rawhttp_image/1/kernel.npz (next to this file).

    python entry_scripts/rawhttp_image/make_model.py
"""

import io
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from model_files import save_model_file  # noqa: E402

MODEL_NAME = "rawhttp_image"
MODEL_VERSION = 1

# edge-enhancing kernel (sums to 1, so flat regions keep their brightness)
KERNEL = np.array([[-1, -1, -1],
                   [-1, 10, -1],
                   [-1, -1, -1]], dtype=np.float64) / 2.0
DEFAULT_SIZE = 64


def main(out_root=HERE):
    buf = io.BytesIO()
    np.savez(buf, kernel=KERNEL, default_size=np.int64(DEFAULT_SIZE))
    return save_model_file(out_root, MODEL_NAME, MODEL_VERSION, "kernel.npz", buf.getvalue())


if __name__ == "__main__":
    main()
