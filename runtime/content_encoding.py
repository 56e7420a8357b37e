"""Request bodies sent with `Content-Encoding: gzip` or `deflate`, inflated incrementally under the body limit.

`inflate()` is CPU work proportional to the inflated size (a 1 MB gzip bomb inflates to 1 GiB), so the server
calls it on a thread, never on the event loop; it stops as soon as the output passes the limit, so memory
stays within about the limit whatever the bomb's ratio.
"""

from __future__ import annotations

import zlib

SUPPORTED = ("gzip", "x-gzip", "deflate", "identity")
_CHUNK = 1 << 20  # output bytes per decompress step: the most inflated beyond the limit before it is noticed


class BodyTooLarge(ValueError):
    """The inflated body passes the limit."""


class BadEncoding(ValueError):
    """The body is not what its Content-Encoding says, or names an encoding not supported (`unsupported`)."""

    def __init__(self, message: str, unsupported: bool = False):
        super().__init__(message)
        self.unsupported = unsupported


def encodings(header: str | None) -> list[str]:
    """The codings applied, in the order they were applied; [] for none or identity."""
    if not header:
        return []
    out = [c.strip().lower() for c in header.split(",") if c.strip()]
    return [c for c in out if c != "identity"]


def check_supported(codings: list[str]) -> None:
    for c in codings:
        if c not in SUPPORTED:
            raise BadEncoding(f"Content-Encoding {c!r} is not supported (gzip, deflate)", unsupported=True)


def inflate(body: bytes, codings: list[str], limit: int) -> bytes:
    """Undo `codings` (last applied first). Raises BodyTooLarge past `limit` bytes, BadEncoding for bad data."""
    check_supported(codings)
    for coding in reversed(codings):
        body = _inflate_one(body, coding, limit)
    return body


def _inflate_one(data: bytes, coding: str, limit: int) -> bytes:
    if coding == "deflate":
        # RFC 9110's deflate is a zlib stream; some clients send raw deflate, which aiohttp (and browsers) accept
        wbits = zlib.MAX_WBITS if data[:1] and data[0] & 0x0F == 8 else -zlib.MAX_WBITS
    else:
        wbits = 16 + zlib.MAX_WBITS
    out = bytearray()
    d = zlib.decompressobj(wbits)
    pending = data
    try:
        while True:
            out += d.decompress(pending, _CHUNK)
            if len(out) > limit:
                raise BodyTooLarge(f"inflated past {limit} bytes")
            pending = d.unconsumed_tail
            if d.eof:
                if wbits > 16 and d.unused_data.strip(b"\0"):  # another gzip member follows (RFC 1952 2.2)
                    pending, d = d.unused_data, zlib.decompressobj(wbits)
                    continue
                break
            if not pending:
                out += d.flush()
                if len(out) > limit:
                    raise BodyTooLarge(f"inflated past {limit} bytes")
                raise BadEncoding(f"the {coding} body is truncated")
    except zlib.error as e:
        raise BadEncoding(f"the body is not valid {coding} data ({e})") from None
    return bytes(out)
