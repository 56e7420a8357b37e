"""The router's access lines: with logging set up as `openscore router` does, they are written by the batched
writer (the logging module costs ~8 % of the router's CPU at 16 in flight), in the UTC line format."""

import asyncio
import logging
import re

from openscore.router.cli import configure_logging
from openscore.router.frontend import AccessLog


def test_the_cli_set_up_gets_the_batched_writer_and_utc_lines(capfd):
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    try:
        configure_logging("info")
        access = AccessLog()
        assert access._out is not None, "the access log fell back to the logging module"

        async def one_line():
            access.log("POST", "/api/v1/service/s/score", 200, ("s", "v1"), "r-1", 0.001, 0.002, 0.003, "", "rid-1")
            await asyncio.sleep(0)  # the writer flushes at the end of the loop turn

        asyncio.run(one_line())
        line = capfd.readouterr().err.strip().splitlines()[-1]
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} I \[\d+\] openscore\.router\.access - POST "
                            r"/api/v1/service/s/score 200 service=s version=v1 replica=r-1 queue_ms=1\.0 "
                            r"upstream_ms=2\.0 total_ms=3\.0 limit=- request_id=rid-1", line), line
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
