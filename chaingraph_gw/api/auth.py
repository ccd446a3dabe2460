"""Authentication: HS256 JWTs from connectionParams, the Authorization header or a cookie.

Token lookup order follows ChainGraph: ``connectionParams.sessionBadAI``, then
``Authorization: Bearer <token>`` on the upgrade request, then the ``session`` cookie. The
connection context is built once per socket, so the identity is fixed at connect time.
With auth disabled every caller is ``dev:admin`` (ChainGraph's dev session).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any

import orjson

from ..trpc.errors import TRPCError
from ..trpc.session import ConnectionInfo

ROLES = ("admin", "agent", "user", "guest")
_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class TokenError(ValueError):
    """A token that cannot be trusted; the message says why."""


@dataclass(frozen=True, slots=True)
class User:
    id: str
    role: str = "user"
    display_name: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


DEV_ADMIN = User("dev:admin", "admin", "Admin User")


@dataclass(slots=True)
class RequestContext:
    """The per-connection context handed to every procedure."""

    user: User | None
    auth_enabled: bool
    info: ConnectionInfo | None = None
    services: Any = None  # the application's services (executor, stores), set by the app
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_authenticated(self) -> bool:
        return self.user is not None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def parse_duration(text: str) -> int:
    """``90``, ``30s``, ``15m``, ``1h``, ``7d``, ``2w`` → seconds."""
    m = _DURATION.match(text)
    if not m or int(m.group(1)) <= 0:
        raise ValueError(f"invalid duration {text!r} (expected e.g. 30m, 1h, 7d)")
    return int(m.group(1)) * _UNITS[m.group(2)]


def mint_token(secret: str, *, user_id: str, role: str, ttl_seconds: int, now: float | None = None) -> str:
    if not secret:
        raise ValueError("AUTH_JWT_SECRET is not set")
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    if not user_id:
        raise ValueError("user id must not be empty")
    iat = int(now if now is not None else time.time())
    header = _b64(orjson.dumps({"alg": "HS256", "typ": "JWT"}))
    payload = _b64(orjson.dumps({"sub": user_id, "role": role, "iat": iat, "exp": iat + ttl_seconds}))
    signing_input = f"{header}.{payload}".encode("ascii")
    sig = hmac.new(secret.encode("utf-8"), signing_input, hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64(sig)}"


def verify_token(secret: str, token: str, *, now: float | None = None) -> User:
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenError("malformed token")
    try:
        header = orjson.loads(_unb64(parts[0]))
        payload = orjson.loads(_unb64(parts[1]))
        sig = _unb64(parts[2])
    except (ValueError, orjson.JSONDecodeError):
        raise TokenError("malformed token") from None
    if not isinstance(header, dict) or header.get("alg") != "HS256":
        raise TokenError("unsupported token algorithm (HS256 required)")
    expected = hmac.new(secret.encode("utf-8"), f"{parts[0]}.{parts[1]}".encode("ascii"), hashlib.sha256).digest()
    if not hmac.compare_digest(sig, expected):
        raise TokenError("invalid token signature")
    if not isinstance(payload, dict):
        raise TokenError("malformed token payload")
    exp = payload.get("exp")
    if not isinstance(exp, (int, float)) or isinstance(exp, bool):
        raise TokenError("token has no expiry")
    if (now if now is not None else time.time()) >= exp:
        raise TokenError("token expired")
    sub = payload.get("sub")
    role = payload.get("role", "user")
    if not isinstance(sub, str) or not sub:
        raise TokenError("token has no subject")
    if role not in ROLES:
        raise TokenError(f"token role {role!r} is not one of {', '.join(ROLES)}")
    return User(sub, role, payload.get("name"))


def find_token(info: ConnectionInfo, params: dict[str, str] | None) -> str | None:
    if params:
        tok = params.get("sessionBadAI")
        if tok:
            return tok
    auth = info.headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        tok = auth[7:].strip()
        if tok:
            return tok
    cookie_header = info.headers.get("cookie")
    if cookie_header:
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(cookie_header)
        except Exception:  # a malformed cookie header is simply no token
            return None
        morsel = jar.get("session")
        if morsel is not None and morsel.value:
            return morsel.value
    return None


class Authenticator:
    """Builds the identity of a connection. A bad token rejects the connection (UNAUTHORIZED)."""

    def __init__(self, *, enabled: bool, secret: str | None) -> None:
        if enabled and not secret:
            raise ValueError("auth is enabled but AUTH_JWT_SECRET is not set")
        self.enabled = enabled
        self.secret = secret or ""

    def authenticate(self, info: ConnectionInfo, params: dict[str, str] | None) -> User | None:
        if not self.enabled:
            return DEV_ADMIN
        token = find_token(info, params)
        if token is None:
            return None  # anonymous: procedures that need a user answer UNAUTHORIZED
        try:
            return verify_token(self.secret, token)
        except TokenError as exc:
            raise TRPCError("UNAUTHORIZED", f"Invalid session token: {exc}") from None
