"""The baseline: a bare aiohttp handler doing the same work as trivial_score.py, nothing else."""
import json
import sys

from aiohttp import web


async def score(request: web.Request) -> web.Response:
    data = json.loads(await request.text())
    return web.Response(body=json.dumps({"result": data["data"][0] * 2}).encode(),
                        content_type="application/json")


app = web.Application()
app.router.add_post("/score", score)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
