"""Hooks as ``mypy --strict`` sees them: every hook method typed with the public names."""

from __future__ import annotations

from typing import assert_type

import resilient_client as rc


class Everything(rc.Hook):
    def on_call_start(self, call: rc.Call) -> None:
        assert_type(call.request.method, str)
        assert_type(call.time_left(), float)
        assert_type(call.policy, rc.RetryPolicy)

    def on_attempt_start(self, call: rc.Call, number: int) -> None:
        pass

    def on_attempt(self, call: rc.Call, event: rc.AttemptEvent) -> None:
        assert_type(event.category, str | None)
        assert_type(event.duration, float)

    def on_retry(self, call: rc.Call, event: rc.RetryEvent) -> None:
        assert_type(event.wait, float)

    def on_rejection(self, call: rc.Call, event: rc.RejectionEvent) -> None:
        assert_type(event.error, rc.RejectedError | None)

    def on_wait(self, call: rc.Call, event: rc.WaitEvent) -> None:
        assert_type(event.seconds, float)
        assert_type(event.strategy, str)

    def on_breaker(self, event: rc.BreakerEvent) -> None:
        assert_type(event.state, str)

    def on_call_end(self, call: rc.Call, error: BaseException | None) -> None:
        pass


def attempt_of(attempt: rc.Attempt) -> int:
    return attempt.number


def install() -> rc.HyperClient:
    return rc.HyperClient(base_url="https://hyper.test", token="t", hooks=[Everything()])
