"""`AMLResponse`, the response type a @rawhttp run() may return (spec 1.6).

A werkzeug Response, so scripts can still set `resp.headers[...]` and `resp.mimetype` afterwards.
"""

import json
from typing import Any, Mapping

from werkzeug.wrappers import Response


class AMLResponse(Response):
    """A response whose body and headers follow azureml-contrib-services' rules.

    `message` None -> `{}` as application/json; `json_str=True` -> `json.dumps(message)` as
    application/json; otherwise the raw str/bytes as text/html (Flask's default), unless
    `response_headers` carries a Content-Type. Every `response_headers` value is split on ","
    into repeated headers, and `x-ms-run-function-failed` is always set.
    """

    default_mimetype = "text/html"

    def __init__(self, message: Any = None, status_code: int = 200,
                 response_headers: Mapping[str, Any] | None = None, json_str: bool = False,
                 run_function_failed: bool = False) -> None:
        headers = dict(response_headers or {})
        if message is None:
            super().__init__(json.dumps({}), status=status_code, mimetype="application/json")
        elif json_str:
            super().__init__(json.dumps(message), status=status_code, mimetype="application/json")
        else:
            super().__init__(message, status=status_code)
        if any(name.lower() == "content-type" for name in headers):
            del self.headers["Content-Type"]  # the caller's value replaces ours instead of repeating it
        self.headers["x-ms-run-function-failed"] = str(bool(run_function_failed))
        for name, value in headers.items():
            for part in str(value).split(","):
                self.headers.add(name, part.strip())
