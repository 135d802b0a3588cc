"""Password hashing (argon2), opaque API tokens and CSRF tokens bound to the session."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from zxcvbn import zxcvbn

from backend.config import get_settings

# argon2 is CPU work (a quarter of a second of it at the default cost, on 4 lanes). Fifty
# log-ins at once had 40 request threads hashing together, 160 lanes on 2 cores, and every
# other request of the process (and its event loop) starved behind them (bench/load.py).
# Hashing waits its turn instead, as many at a time as there are cores.
HASHING_SLOT_COUNT = os.cpu_count() or 1
HASHING_SLOTS = threading.BoundedSemaphore(HASHING_SLOT_COUNT)


@lru_cache
def _hasher(time_cost: int, memory_kib: int) -> PasswordHasher:
    return PasswordHasher(time_cost=time_cost, memory_cost=memory_kib)


def hasher() -> PasswordHasher:
    """argon2id with the configured cost (hashes record their own parameters)."""
    settings = get_settings()
    return _hasher(settings.password_hash_time_cost, settings.password_hash_memory_kib)


SESSION_COOKIE = "autodl_session"
CSRF_COOKIE = "autodl_csrf"
CSRF_HEADER = "X-CSRF-Token"


def hash_password(password: str) -> str:
    with HASHING_SLOTS:
        return hasher().hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        with HASHING_SLOTS:
            return hasher().verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@lru_cache
def _unknown_user_hash(time_cost: int, memory_kib: int) -> str:
    return _hasher(time_cost, memory_kib).hash(secrets.token_urlsafe(16))


def verify_password_of_nobody(password: str) -> None:
    """The argon2 work of checking a password, for an email with no account: a login for an
    unknown email then takes as long as a wrong password, and timing tells nothing."""
    settings = get_settings()
    digest = _unknown_user_hash(settings.password_hash_time_cost, settings.password_hash_memory_kib)
    verify_password(digest, password)


MIN_PASSWORD_SCORE = 3  # zxcvbn: "safely unguessable: moderate protection from offline attacks"
_ZXCVBN_MAX_CHARS = 72  # zxcvbn refuses longer input; the first 72 characters must be strong


def password_weakness(password: str, email: str) -> str | None:
    """Why ``password`` is too easy to guess, in words, or None when it is strong enough.
    Estimated with zxcvbn (dictionaries, keyboard patterns, repeats, dates, the email)."""
    local = email.partition("@")[0]
    result = zxcvbn(password[:_ZXCVBN_MAX_CHARS], user_inputs=[email, local, "autodl"])
    if result["score"] >= MIN_PASSWORD_SCORE:
        return None
    feedback = result["feedback"]
    words = [
        feedback.get("warning") or "It is too easy to guess.",
        *feedback.get("suggestions", []),
    ]
    return "Choose a stronger password. " + " ".join(w for w in words if w)


def new_token() -> str:
    return "adl_" + secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def csrf_token_for(session_token: str, secret_key: str) -> str:
    """A CSRF token derived from the session, so it cannot be planted by another site."""
    return hmac.new(secret_key.encode(), session_token.encode(), hashlib.sha256).hexdigest()


def csrf_matches(session_token: str, secret_key: str, presented: str | None) -> bool:
    if not presented:
        return False
    return hmac.compare_digest(csrf_token_for(session_token, secret_key), presented)
