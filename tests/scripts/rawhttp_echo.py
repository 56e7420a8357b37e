"""@rawhttp run(): reports what the request object offers, and returns AMLResponse in its forms."""
import json

from azureml.contrib.services.aml_request import rawhttp
from azureml.contrib.services.aml_response import AMLResponse


def init():
    pass


@rawhttp
def run(request):
    mode = request.args.get("mode", "info")
    if request.method == "OPTIONS":
        return AMLResponse("options handled by run", 200)
    if mode == "info":
        files = {k: {"filename": f.filename, "size": len(f.stream.read())} for k, f in request.files.items()}
        info = {
            "type": type(request).__name__,
            "method": request.method,
            "args": request.args.to_dict(flat=False),
            "form": request.form.to_dict(flat=False),
            "files": files,
            "data_len": len(request.get_data()),
            "full_path": request.full_path,
            "url": request.url,
            "content_type": request.headers.get("Content-Type"),
            "x_custom": request.headers.get("X-Custom"),
            "is_json": request.is_json,
        }
        if request.is_json:
            info["json"] = request.get_json()
        return AMLResponse(info, 200, json_str=True)
    if mode == "bytes":
        resp = AMLResponse(message=request.get_data()[::-1], status_code=200,
                           response_headers={"Content-Type": "application/octet-stream"})
        return resp
    if mode == "after":
        resp = AMLResponse("plain text", 201)
        resp.headers["X-After"] = "set later"
        resp.mimetype = "text/plain"
        return resp
    if mode == "multi":
        return AMLResponse("x", 200, {"X-Multi": "a, b"})
    if mode == "422":
        return AMLResponse(json.dumps({"error": "unprocessable"}), 422)
    if mode == "503":
        return AMLResponse("down", 503)
    if mode == "json":
        return request.json  # non-JSON content type raises inside run() -> 500
    return AMLResponse("unknown mode", 400)
