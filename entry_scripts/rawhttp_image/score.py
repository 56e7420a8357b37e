# Raw-HTTP entry script: run() gets the whole HTTP request.
#
#   POST /score            body = image bytes (any format Pillow reads), or
#                          multipart/form-data with the file in field "image"
#                          ?size=N  longest side of the result (default from the model)
#                          -> image/png: grayscale thumbnail, edge-enhanced
#   GET  /score?...        -> JSON description of the service and of the query
#   anything else          -> 405
import io
import os

import numpy as np
from azureml.contrib.services.aml_request import AMLRequest, rawhttp
from azureml.contrib.services.aml_response import AMLResponse
from PIL import Image, ImageFilter, ImageStat, UnidentifiedImageError

MAX_SIZE = 1024

# set by init()
kernel: np.ndarray
kernel_filter: ImageFilter.Kernel
default_size: int


def init():
    global kernel_filter, default_size, kernel
    # AZUREML_MODEL_DIR points at ./azureml-models/$MODEL_NAME/$VERSION
    model_path = os.path.join(os.getenv("AZUREML_MODEL_DIR"), "kernel.npz")
    with np.load(model_path) as npz:
        kernel = npz["kernel"]
        default_size = int(npz["default_size"])
    kernel_filter = ImageFilter.Kernel(kernel.shape, kernel.flatten().tolist(), scale=1)
    print(f"loaded {model_path}: {kernel.shape} kernel, default size {default_size}")


def process(image, size):
    """Grayscale, shrink to fit size x size (aspect ratio kept), apply the kernel."""
    image = image.convert("L")
    image.thumbnail((size, size))
    return image.filter(kernel_filter)


@rawhttp
def run(request: AMLRequest):
    if request.method == "GET":
        return {
            "service": "grayscale edge-enhancing thumbnailer",
            "usage": "POST an image (raw body or multipart field 'image') to get a PNG back",
            "default_size": default_size,
            "kernel": kernel.tolist(),
            "path": request.full_path,
            "args": request.args.to_dict(flat=False),
        }

    if request.method != "POST":
        return AMLResponse(f"Method {request.method} is not supported", 405)

    try:
        size = int(request.args.get("size", default_size))
    except ValueError:
        return AMLResponse("'size' must be an integer", 400)
    if not 1 <= size <= MAX_SIZE:
        return AMLResponse(f"'size' must be between 1 and {MAX_SIZE}", 400)

    if "image" in request.files:
        stream = request.files["image"].stream
    else:
        body = request.get_data(cache=False)
        if not body:
            return AMLResponse("No image: send it as the request body or as the multipart field 'image'",
                               status_code=422)
        stream = io.BytesIO(body)

    try:
        image = Image.open(stream)
        image.load()
    except (UnidentifiedImageError, OSError) as e:
        return AMLResponse(f"Cannot read the image: {e}", 400)

    result = process(image, size)
    output = io.BytesIO()
    result.save(output, format="PNG")

    resp = AMLResponse(output.getvalue(), 200, {"Content-Type": "image/png"})
    resp.headers["X-Image-Size"] = f"{result.width}x{result.height}"
    resp.headers["X-Mean-Brightness"] = f"{ImageStat.Stat(result).mean[0]:.3f}"
    return resp
