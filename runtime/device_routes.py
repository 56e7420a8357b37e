"""`GET /devices`: the machine's device inventory (what `openscore devices --json` prints), for a router or
an operator deciding where a replica can run.

Discovery loads the CUDA driver and the OpenCL ICDs (tens to hundreds of ms), so it runs off the event loop
and the answer is cached briefly; devices do not come and go between scrapes.
"""

from __future__ import annotations

import asyncio
import time

import orjson
from aiohttp import web
from aiohttp.web_request import BaseRequest

CACHE_S = 60.0


class DevicesRoute:
    def __init__(self) -> None:
        self._body: bytes | None = None
        self._at = 0.0
        self._lock = asyncio.Lock()

    async def handle(self, request: BaseRequest) -> web.StreamResponse:
        async with self._lock:  # one discovery at a time; the others get its result
            if self._body is None or time.monotonic() - self._at > CACHE_S:
                self._body = await asyncio.get_running_loop().run_in_executor(None, _inventory_json)
                self._at = time.monotonic()
        return web.Response(body=self._body, content_type="application/json")


def _inventory_json() -> bytes:
    from openscore.accelerators.devices import inventory
    return orjson.dumps(inventory())
