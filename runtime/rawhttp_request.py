"""The request object a `@rawhttp` run() receives: a real werkzeug Request, as Flask gives azmlinfsrv.

Building it from a WSGI environ gives scripts the whole API they use (args, form, files, get_data(), json,
headers, full_path, url) with werkzeug's own parsing, instead of a look-alike.
"""

from __future__ import annotations

import io
import sys

from werkzeug.wrappers import Request

from openscore.runtime.incoming_request import IncomingRequest
from openscore.runtime.request_context import current_request_id


class ScoringRequest(Request):
    # werkzeug's 500 kB default for in-memory form fields would be a second, hidden body limit;
    # the server's own body limit already bounds the whole request.
    max_form_memory_size = None
    max_form_parts = 10_000


def build_environ(req: IncomingRequest) -> dict[str, object]:
    host, _, port = req.host.partition(":")
    environ: dict[str, object] = {
        "REQUEST_METHOD": req.method,
        "SCRIPT_NAME": "",
        "PATH_INFO": req.path,
        "QUERY_STRING": req.query_string,
        "SERVER_NAME": host or "localhost",
        "SERVER_PORT": port or ("443" if req.scheme == "https" else "80"),
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": req.remote,
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": req.scheme,
        "wsgi.input": io.BytesIO(req.body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "CONTENT_LENGTH": str(len(req.body)) if req.body else "",
        "REQUEST_ID": current_request_id.get() or "",
    }
    for key, value in req.headers.items():
        name = key.upper().replace("-", "_")
        if name == "CONTENT_TYPE":
            environ["CONTENT_TYPE"] = value
        elif name == "CONTENT_LENGTH":
            continue  # the body is already read; its real length is set above
        else:
            wsgi_key = "HTTP_" + name
            prev = environ.get(wsgi_key)
            environ[wsgi_key] = f"{prev},{value}" if prev else value
    return environ


def build_request(req: IncomingRequest) -> ScoringRequest:
    return ScoringRequest(build_environ(req))
