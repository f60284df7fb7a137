"""API keys: who may call Muse, for which users, how often.

A key is ``muse_<id>_<secret>``: the id (public, 12 hex digits) finds the key's row, and the
store keeps only the SHA-256 of the whole key. The secret is 256 random bits, so a fast hash is
enough (as for GitHub's and Stripe's API tokens); slow password hashes such as bcrypt exist to
protect low-entropy passwords, and would add their cost to every request.

Two scopes:

- ``admin``: everything, including the catalog (``POST /v1/items``), ranker adapters
  (``POST /v1/adapters/serve``), deleting users and ``/metrics``;
- ``client``: recommendations, chat, feedback and history, for the users the key is bound to
  only (an app acting for its signed-in users).

Each key has a rate limit (``"120/minute"``, the `limits` library's notation), counted in a
moving window by `limits` in the storage that ``MUSE_RATE_LIMIT_STORAGE`` names.

``MUSE_AUTH=off`` (the default, what ``make run`` serves) checks no key; the settings then refuse
any address but the loopback one, so only this machine can reach the open service.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass

from agent.store import EventStore

SCOPES = ("admin", "client")
DEFAULT_RATE = "120/minute"
PREFIX = "muse"


class AuthenticationError(Exception):
    """No key, a malformed one, or one Muse does not know (or has revoked): HTTP 401."""


class PermissionDeniedError(Exception):
    """A known key asks for something its scope or its users do not allow: HTTP 403."""


class RateLimitedError(Exception):
    """A key went over its rate limit: HTTP 429, with ``retry_after`` (whole seconds)."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Caller:
    """Who is calling: a key's id, scope, bound users and rate (``rate`` None: not limited)."""

    key_id: str
    scope: str
    users: frozenset[str] = frozenset()
    rate: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.scope == "admin"

    def check_admin(self, action: str) -> None:
        """Raises ``PermissionDeniedError`` unless the caller has the admin scope."""
        if not self.is_admin:
            raise PermissionDeniedError(f"{action} needs an admin key; key {self.key_id} has the {self.scope} scope")

    def check_users(self, user_ids: Iterable[str]) -> None:
        """Raises ``PermissionDeniedError`` naming the first user this caller may not act for."""
        if self.is_admin:
            return
        for user in user_ids:
            if user not in self.users:
                raise PermissionDeniedError(
                    f"key {self.key_id} may act for {len(self.users)} user(s), not for user {user!r}"
                )


OPEN = Caller(key_id="open", scope="admin")  # MUSE_AUTH=off: every request may do everything


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def check_rate(rate: str) -> str:
    """``rate`` if the `limits` library reads it (``"120/minute"``, ``"10 per second"``), else
    ``ValueError`` saying what is expected."""
    from limits import parse

    try:
        parse(rate)
    except ValueError as exc:
        raise ValueError(f"rate {rate!r}: {exc}; write it as COUNT/UNIT, e.g. 120/minute or 5/second") from exc
    return rate


def create_key(
    store: EventStore, scope: str, users: Iterable[str] = (), rate: str = DEFAULT_RATE, name: str = ""
) -> tuple[str, dict]:
    """Make and store a key; returns ``(key, row)``. The key is shown once: only its hash is
    stored. Raises ``ValueError`` for an unknown scope, a client key without users, an admin key
    with users, or a rate `limits` cannot read."""
    users = sorted(set(users))
    if scope not in SCOPES:
        raise ValueError(f"scope {scope!r}: use one of {', '.join(SCOPES)}")
    if scope == "client" and not users:
        raise ValueError("a client key acts for named users: give at least one --user")
    if scope == "admin" and users:
        raise ValueError("an admin key acts for every user: give no --user")
    key_id = secrets.token_hex(6)
    key = f"{PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
    row = {
        "id": key_id,
        "name": name,
        "scope": scope,
        "rate": check_rate(rate),
        "hash": hash_key(key),
        "created_at": time.time(),
    }
    store.add_api_key(row, users)
    return key, {**row, "users": users, "revoked_at": None}


class KeyChecker:
    """Turns a request's bearer token into a ``Caller``, and counts its requests.

    ``enabled=False`` (``MUSE_AUTH=off``) lets every request through as ``OPEN``. Keys are read
    from the store on each request, so ``muse keys create`` and ``muse keys revoke`` take effect
    on a running server at once. ``storage`` is a `limits` storage URI (``memory://`` counts in
    this process; ``redis://host:6379`` shares the counts between processes)."""

    def __init__(self, store: EventStore, enabled: bool, storage: str = "memory://"):
        from limits import storage as limit_storage
        from limits import strategies

        self.store, self.enabled = store, enabled
        self._limiter = strategies.MovingWindowRateLimiter(limit_storage.storage_from_string(storage))

    def caller(self, authorization: str | None) -> Caller:
        """The caller an ``Authorization`` header value names. Raises ``AuthenticationError``
        for no key, a malformed one, an unknown one or a revoked one, and ``RateLimitedError``
        when the key is over its rate."""
        if not self.enabled:
            return OPEN
        if not authorization:
            raise AuthenticationError(
                "this Muse needs an API key: send the header 'Authorization: Bearer <key>' "
                "(an admin creates keys with `muse keys create`)"
            )
        scheme, _, key = authorization.strip().partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            raise AuthenticationError("the Authorization header must read 'Bearer <key>'")
        prefix, _, rest = key.partition("_")
        key_id = rest.partition("_")[0]
        row = self.store.api_key(key_id) if prefix == PREFIX and key_id else None
        if row is None or not hmac.compare_digest(row["hash"], hash_key(key)):
            raise AuthenticationError("unknown API key")
        if row["revoked_at"] is not None:
            raise AuthenticationError(f"API key {key_id} was revoked")
        caller = Caller(key_id, row["scope"], frozenset(row["users"]), row["rate"])
        self._count(caller)
        return caller

    def _count(self, caller: Caller) -> None:
        from limits import parse

        limit = parse(caller.rate)
        if self._limiter.hit(limit, caller.key_id):
            return
        reset_at = self._limiter.get_window_stats(limit, caller.key_id).reset_time
        wait = max(1, math.ceil(reset_at - time.time()))
        raise RateLimitedError(f"key {caller.key_id} is over its rate limit of {caller.rate}; retry in {wait} s", wait)
