"""The model baselines: bare aiohttp handlers that run onnxruntime with nothing else (no slots, ids, metrics or
logs): V2 JSON infer (decode, run, encode) and a no-code style /score ({"data": X} -> {"<output>": [...]}).
Usage: bare_v2_aiohttp.py PORT MODEL.onnx"""
import sys

import numpy as np
import onnxruntime as ort
import orjson
from aiohttp import web

so = ort.SessionOptions()
so.intra_op_num_threads = 1
sess = ort.InferenceSession(sys.argv[2], so, providers=["CPUExecutionProvider"])
in_name, out_name = sess.get_inputs()[0].name, sess.get_outputs()[0].name


async def infer(request: web.Request) -> web.Response:
    doc = orjson.loads(await request.read())
    inp = doc["inputs"][0]
    x = np.asarray(inp["data"], dtype=np.float32).reshape(inp["shape"])
    y = sess.run(None, {inp["name"]: x})[0]
    body = {"model_name": request.match_info["model"],
            "outputs": [{"name": out_name, "datatype": "FP32", "shape": list(y.shape), "data": y.reshape(-1).tolist()}]}
    return web.Response(body=orjson.dumps(body), content_type="application/json")


async def score(request: web.Request) -> web.Response:
    x = np.asarray(orjson.loads(await request.read())["data"], dtype=np.float32)
    y = sess.run(None, {in_name: x})[0]
    return web.Response(body=orjson.dumps({out_name: y.tolist()}), content_type="application/json")


async def ready(request: web.Request) -> web.Response:
    return web.json_response({"ready": True})


app = web.Application()
app.router.add_post("/v2/models/{model}/infer", infer)
app.router.add_post("/score", score)
app.router.add_get("/v2/health/ready", ready)
try:
    import uvloop
    loop = uvloop.new_event_loop()
except ImportError:
    loop = None
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None, loop=loop)
