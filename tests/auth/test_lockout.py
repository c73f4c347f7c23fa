"""The lockout's rules (services/auth/lockout.py): back-off, reservations, the address budget."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.auth import lockout
from services.auth.lockout import AddressThrottle, LockoutPolicy, StrangerStates
from services.auth.models import LoginState
from services.core.errors import TooManyRequests

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
POLICY = LockoutPolicy(max_failures=3, lock_seconds=60, max_lock_seconds=3600)


@pytest.mark.parametrize(("failures", "seconds"), [
    (0, None), (2, None),
    (3, 60), (4, 120), (5, 240), (8, 1920),
    (9, 3600), (10, 3600), (10_000, 3600),  # capped, however many
])
def test_the_lock_doubles_up_to_the_cap(failures: int, seconds: int | None) -> None:
    lock = POLICY.lock_for(failures)
    assert lock == (None if seconds is None else timedelta(seconds=seconds))


def test_a_cap_below_the_first_lock_does_not_shorten_it() -> None:
    assert LockoutPolicy(max_failures=1, lock_seconds=600, max_lock_seconds=60).lock_for(1) \
        == timedelta(seconds=600)


def test_the_reservation_that_reaches_the_limit_locks_at_once() -> None:
    state = LoginState()
    for failures in (1, 2):
        reserved = POLICY.reserve(state, NOW)
        assert reserved == LoginState(failures, None)
        state = reserved
    last = POLICY.reserve(state, NOW)
    assert last == LoginState(3, NOW + timedelta(seconds=60))
    # nothing more is verified while it holds
    assert POLICY.reserve(last, NOW + timedelta(seconds=59)) is None
    # once it runs out, one attempt, which locks again for longer if it fails
    assert POLICY.reserve(last, NOW + timedelta(seconds=60)) == LoginState(
        4, NOW + timedelta(seconds=180))


def test_strangers_are_compared_and_set() -> None:
    states = StrangerStates()
    assert states.get("nobody") == LoginState()
    assert states.compare_and_set("nobody", LoginState(1), LoginState())
    assert not states.compare_and_set("nobody", LoginState(2), LoginState())
    assert states.get("nobody") == LoginState(1)
    assert states.compare_and_set("nobody", LoginState(), None)
    assert states._states == {}  # a clean state takes no memory


def test_strangers_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lockout, "MAX_KEYS", 3)
    states = StrangerStates()
    for name in ("a", "b", "c", "d"):
        states.compare_and_set(name, LoginState(1), None)
    assert list(states._states) == ["b", "c", "d"]  # the oldest forgotten


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_address_has_a_failure_budget_per_window() -> None:
    clock = FakeClock()
    throttle = AddressThrottle(2, clock)
    throttle.take("10.0.0.1")
    clock.now += 100
    throttle.take("10.0.0.1")
    with pytest.raises(TooManyRequests) as refused:
        throttle.take("10.0.0.1")
    assert refused.value.code == "too_many_failures"
    assert refused.value.headers == {"Retry-After": "500"}  # when the first failure leaves
    throttle.take("10.0.0.2")  # each address has its own
    clock.now += 500
    throttle.take("10.0.0.1")


def test_a_slot_given_back_is_not_a_failure() -> None:
    throttle = AddressThrottle(1, FakeClock())
    slot = throttle.take("10.0.0.1")
    throttle.give_back("10.0.0.1", slot)
    throttle.take("10.0.0.1")
    with pytest.raises(TooManyRequests):
        throttle.take("10.0.0.1")
