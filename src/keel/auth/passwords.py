"""argon2id password hashing off the event loop, a dummy verification for unknown users, policy.

Hashing is deliberately slow CPU work (tens of milliseconds with OWASP's parameters): inline in
`async def` it would stall every other request. argon2-cffi releases the GIL, so
it runs in threads while the loop keeps serving: in its own executor with one thread fewer than
there are CPUs (at least one), so a burst of logins queues for a core instead of taking every
core from the event loop (the default executor would run CPUs + 4 hashes at once).
"""

from __future__ import annotations

import asyncio
import functools
import os
import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from keel.errors import Unprocessable
from keel.settings import Settings

_T = TypeVar("_T")

PASSWORD_MAX_LENGTH = 128  # bounds the work an attacker can make us do per request
MIN_DISTINCT_CHARACTERS = 5


@functools.cache
def _hasher(memory_cost: int, time_cost: int, parallelism: int) -> PasswordHash:
    return PasswordHash(
        (Argon2Hasher(time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism),)
    )


def password_hasher(settings: Settings) -> PasswordHash:
    return _hasher(
        settings.argon2_memory_cost_kib, settings.argon2_time_cost, settings.argon2_parallelism
    )


@functools.cache
def _dummy_hash(hasher: PasswordHash) -> str:
    """A hash of a random password with the live parameters, so a dummy check costs the same."""
    return hasher.hash(secrets.token_urlsafe(16))


@functools.cache
def _hashing_executor() -> ThreadPoolExecutor:
    workers = max(1, (os.cpu_count() or 2) - 1)
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="keel-argon2")


async def _in_hashing_thread(function: Callable[..., _T], *args: object) -> _T:
    return await asyncio.get_running_loop().run_in_executor(_hashing_executor(), function, *args)


async def hash_password(settings: Settings, password: str) -> str:
    return await _in_hashing_thread(password_hasher(settings).hash, password)


def _verify(
    hasher: PasswordHash, password: str, password_hash: str | None
) -> tuple[bool, str | None]:
    if password_hash is None:
        hasher.verify(password, _dummy_hash(hasher))
        return False, None
    return hasher.verify_and_update(password, password_hash)


async def verify_password(
    settings: Settings, password: str, password_hash: str | None
) -> tuple[bool, str | None]:
    """(matches, new hash when the parameters changed and the hash should be upgraded).

    With `password_hash=None` (unknown user) it verifies against a dummy hash and returns False:
    the caller's answer then takes the same time as for a wrong password.
    """
    return await _in_hashing_thread(_verify, password_hasher(settings), password, password_hash)


def check_password_policy(
    settings: Settings, password: str, *, email: str | None = None, field: str = "password"
) -> None:
    """Raise a 422 naming the rule a password breaks (NIST 800-63B style: length, not classes)."""
    problems: list[str] = []
    if len(password) < settings.password_min_length:
        problems.append(f"must be at least {settings.password_min_length} characters long")
    if len(password) > PASSWORD_MAX_LENGTH:
        problems.append(f"must be at most {PASSWORD_MAX_LENGTH} characters long")
    if len(set(password)) < MIN_DISTINCT_CHARACTERS:
        problems.append(f"must contain at least {MIN_DISTINCT_CHARACTERS} different characters")
    if email and email.lower() in password.lower():
        problems.append("must not contain your email address")
    if problems:
        raise Unprocessable(
            "The password " + "; ".join(problems) + ".",
            errors=[
                {"loc": ["body", field], "msg": msg, "type": "password_policy"} for msg in problems
            ],
        )
