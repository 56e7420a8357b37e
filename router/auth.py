"""Scoring auth (Azure's model: two keys per service, or expiring tokens; exclusive) and admin auth.

Keys are compared with `hmac.compare_digest` against both keys every time, so timing says nothing about
which key (or how much of it) matched. Tokens are HS256 JWTs made and checked by PyJWT, signed with the
store's current signing key (`kid` header) and bound to one service through `aud`; a rotation keeps older
keys verifying until their tokens expire, unless revoked.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass

import jwt

from openscore.router.state import SigningKey

ISSUER = "openscore-router"
ALGORITHM = "HS256"


class AuthError(Exception):
    """A 401: `reason` is the metric label, the message goes to the client."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


def bearer(header: str | None) -> str | None:
    """The credential of `Authorization: Bearer <credential>`, None when there is none. Keys and tokens are
    printable ASCII: anything else (invalid UTF-8 arrives as surrogates) is an AuthError, never a crash."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    value = value.strip()
    if not (value.isascii() and value.isprintable()):
        raise AuthError("malformed", "The Authorization header holds characters no key or token has "
                                     "(only printable ASCII).")
    return value


def keys_match(presented: str, keys: tuple[str, ...]) -> bool:
    """Constant time over all keys (no early exit on the first match)."""
    p = presented.encode("utf-8", "surrogateescape")
    ok = False
    for k in keys:
        ok |= hmac.compare_digest(p, k.encode("utf-8", "surrogateescape"))
    return ok


@dataclass(frozen=True)
class Token:
    access_token: str
    token_type: str
    refresh_after: int
    expiry_on: int

    def as_json(self) -> dict[str, object]:
        """Azure's answer to `get_access_token()` (epoch seconds)."""
        return {"accessToken": self.access_token, "tokenType": self.token_type,
                "refreshAfter": self.refresh_after, "expiryOn": self.expiry_on}


class TokenAuthority:
    def __init__(self, lifetime_s: int = 3600, leeway_s: int = 1):
        self.lifetime_s = lifetime_s
        self.leeway_s = leeway_s
        self._keys: dict[str, SigningKey] = {}
        self._current: SigningKey | None = None

    def set_keys(self, keys: tuple[SigningKey, ...]) -> None:
        self._keys = {k.kid: k for k in keys}
        live = [k for k in keys if k.retired_at is None]
        self._current = live[-1] if live else None

    @property
    def can_issue(self) -> bool:
        return self._current is not None

    def issue(self, service: str, now: float | None = None, lifetime_s: int | None = None) -> Token:
        if self._current is None:
            raise RuntimeError("no token signing key in the workspace")
        now = int(now if now is not None else time.time())
        life = lifetime_s if lifetime_s is not None else self.lifetime_s
        exp = now + life
        claims = {"iss": ISSUER, "aud": service, "sub": service, "iat": now, "nbf": now - 1, "exp": exp}
        token = jwt.encode(claims, self._current.secret, algorithm=ALGORITHM, headers={"kid": self._current.kid})
        return Token(token, "Bearer", now + life // 2, exp)

    def verify(self, token: str, service: str) -> Mapping[str, object]:
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError:
            raise AuthError("malformed_token", "The token is not a valid JWT.") from None
        key = self._keys.get(kid) if isinstance(kid, str) else None
        if key is None or not key.verifies_at(time.time()):
            raise AuthError("unknown_signing_key", "The token was signed with an unknown or revoked key.")
        try:
            return jwt.decode(token, key.secret, algorithms=[ALGORITHM], audience=service, issuer=ISSUER,
                              leeway=self.leeway_s, options={"require": ["exp", "iat", "aud", "iss"]})
        except jwt.ExpiredSignatureError:
            raise AuthError("expired_token", "The token has expired; request a new one.") from None
        except jwt.InvalidAudienceError:
            raise AuthError("wrong_audience", f"The token is not valid for service {service}.") from None
        except jwt.PyJWTError as e:
            raise AuthError("invalid_token", f"The token is invalid: {e}.") from None


@dataclass(frozen=True)
class ServiceAuth:
    """One service's scoring auth, rebuilt whenever the store changes."""
    mode: str                     # "key", "token" or "none"
    keys: tuple[str, ...] = ()

    def check(self, service: str, authorization: str | None, tokens: TokenAuthority) -> None:
        if self.mode == "none":
            return
        presented = bearer(authorization)
        if presented is None:
            what = "a key" if self.mode == "key" else "a token"
            raise AuthError("missing", f"Authorization required: send 'Authorization: Bearer <{what[2:]}>' "
                                       f"with {what} for service {service}.")
        if self.mode == "key":
            if not keys_match(presented, self.keys):
                raise AuthError("wrong_key", f"The key is not valid for service {service}.")
            return
        tokens.verify(presented, service)


class AdminAuth:
    def __init__(self, admin_key: str):
        if len(admin_key) < 16:
            raise ValueError("the admin key must be at least 16 characters")
        self._key = admin_key

    def check(self, authorization: str | None) -> None:
        presented = bearer(authorization)
        if presented is None:
            raise AuthError("missing", "Admin API: send 'Authorization: Bearer <admin key>'.")
        if not keys_match(presented, (self._key,)):
            raise AuthError("wrong_key", "Admin API: the admin key is not valid.")

    def proof(self, nonce: str, port: int) -> str:
        """Proves this router holds the key without the client sending it first (so a client never hands its
        key to some other server on the port). Bound to the port the request arrived on: a server elsewhere
        cannot relay a client's nonce here and pass the answer off as its own."""
        return identity_proof(self._key, nonce, port)


IDENTITY_NONCE_MAX = 256


def identity_proof(admin_key: str, nonce: str, port: int) -> str:
    """HMAC-SHA256(admin key, "openscore-router-identity:<port>:<nonce>"), hex (the deployer computes the same)."""
    msg = f"openscore-router-identity:{int(port)}:{nonce}".encode("utf-8", "surrogateescape")
    return hmac.new(admin_key.encode("utf-8", "surrogateescape"), msg, "sha256").hexdigest()
