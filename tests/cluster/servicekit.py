"""Waiting for a ClusterIP Service to answer from the host: kube-proxy programs its rules a moment after the
Endpoints change (up to a second, more on a loaded machine), so a pod's Ready is not yet a working Service."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit


def wait_until_answers(url: str, timeout_s: float = 60.0) -> int:
    """GET the URL's `/readyz` until the Service answers at all (any HTTP status); that status."""
    parts = urlsplit(url)
    probe = f"{parts.scheme}://{parts.netloc}/readyz"
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(probe, timeout=5) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"{probe} did not answer within {timeout_s:.0f} s") from None
            time.sleep(0.2)
