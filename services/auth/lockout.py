"""How many wrong passwords an account and a client address get, and how long they then wait.

Per account, an attempt is *reserved* before its password is verified: counted as a failure in
one compare-and-set of the account's ``(failures, locked_until)`` (``AuthStore.
set_login_state``), and reset by a success. However many guesses arrive at once, at most
``max_failures`` in a row are verified: the reservation that reaches ``max_failures`` locks the
account at once, for ``lock_seconds``, and is lifted only if its password turns out right. Each
further failure doubles the lock, up to ``max_lock_seconds`` (exponential back-off instead of a
hard lock): past the limit a guesser gets one guess per lock period, and whoever mistyped waits
minutes. Names with no account (unknown, or directory people who never signed in) are counted
by the same rule in this process's memory (``StrangerStates``), so a lock does not tell which
names exist either.

Per client address, in front of that (``AddressThrottle``): at most ``address_failures`` wrong
passwords from one address in any ``ADDRESS_WINDOW``. Past it, attempts from the address are
refused (429) before any verification and before they count against an account, so one client
cannot spray guesses over many accounts, nor keep charging an account's back-off.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from services.auth.models import LoginState
from services.core.errors import TooManyRequests

__all__ = ["ADDRESS_WINDOW", "AddressThrottle", "LockoutPolicy", "StrangerStates"]

ADDRESS_WINDOW = 600.0
# Bounds the memory of the in-process counts; a flood of new names or addresses past it
# forgets the oldest (the other count, and the account's own in the store, still hold).
MAX_KEYS = 10_000
# 2**this already exceeds any sensible cap; it keeps huge failure counts from overflowing.
_MAX_DOUBLINGS = 40


@dataclass(frozen=True, slots=True)
class LockoutPolicy:
    max_failures: int = 10
    lock_seconds: float = 600
    max_lock_seconds: float = 3600
    address_failures: int = 30

    def lock_for(self, failures: int) -> timedelta | None:
        """How long an account stays locked after ``failures`` failures in a row."""
        if failures < self.max_failures:
            return None
        doublings = min(failures - self.max_failures, _MAX_DOUBLINGS)
        return timedelta(seconds=min(self.lock_seconds * 2 ** doublings,
                                     max(self.max_lock_seconds, self.lock_seconds)))

    def locked(self, state: LoginState, now: datetime) -> bool:
        return state.locked_until is not None and state.locked_until > now

    def reserve(self, state: LoginState, now: datetime) -> LoginState | None:
        """``state`` with one more attempt counted as failed, locked as that failure would
        lock it; None while the account is locked (the attempt must not be verified)."""
        if self.locked(state, now):
            return None
        failures = state.failures + 1
        lock = self.lock_for(failures)
        return LoginState(failures, None if lock is None else now + lock)


class StrangerStates:
    """Login states of names without an account, in this process (compare-and-set, as the
    store does it for accounts)."""

    def __init__(self) -> None:
        self._states: dict[str, LoginState] = {}

    def get(self, name: str) -> LoginState:
        return self._states.get(name, LoginState())

    def compare_and_set(self, name: str, new: LoginState, expected: LoginState | None) -> bool:
        if expected is not None and self.get(name) != expected:
            return False
        self._states.pop(name, None)
        if new != LoginState():
            if len(self._states) >= MAX_KEYS:
                del self._states[next(iter(self._states))]
            self._states[name] = new
        return True


class AddressThrottle:
    """At most ``limit`` failed sign-ins per client address in any ``ADDRESS_WINDOW``, counted
    in this process. Each attempt takes a slot before its password is verified (so concurrent
    guesses cannot overtake the count), and gives it back if the password was right."""

    def __init__(self, limit: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._limit = limit
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}

    def take(self, address: str) -> float:
        """The slot taken (give it back with ``give_back``); TooManyRequests past the limit."""
        now = self._clock()
        failures = self._failures.pop(address, None) or deque()
        while failures and failures[0] <= now - ADDRESS_WINDOW:
            failures.popleft()
        if len(self._failures) >= MAX_KEYS:
            del self._failures[next(iter(self._failures))]
        self._failures[address] = failures  # re-inserted: the dict stays oldest-used first
        if len(failures) >= self._limit:
            retry = max(1, math.ceil(failures[0] + ADDRESS_WINDOW - now))
            raise TooManyRequests(
                "too_many_failures",
                f"too many failed sign-ins from this address; retry in {retry} s",
                {"Retry-After": str(retry)})
        failures.append(now)
        return now

    def give_back(self, address: str, slot: float) -> None:
        failures = self._failures.get(address)
        if failures is not None and slot in failures:
            failures.remove(slot)
