"""The ``resilient_client`` logger as a hook: one INFO line per retry, DEBUG lines per fault and wait.

Secrets: every text is redacted with what the request carried before it is formatted, and the
logger's records pass the package's log redaction filter too.
"""

from __future__ import annotations

import logging

from resilient_client._pipeline import AttemptEvent, Call, Hook, RejectionEvent, RetryEvent, WaitEvent

logger = logging.getLogger("resilient_client")


class LoggingHook(Hook):
    """Logs retries at INFO, faults, refusals and waits at DEBUG (secrets redacted)."""

    attempt_successes = False  # it logs faults only: a success costs it nothing

    def on_attempt(self, call: Call, event: AttemptEvent) -> None:
        if not logger.isEnabledFor(logging.DEBUG) or event.category in (None, "ok"):
            return
        logger.debug(
            "%s %s %s -> %s (code %s, HTTP %s)",
            event.vendor,
            event.method,
            event.url,
            event.category,
            event.code,
            event.status,
        )

    def hears_retries(self) -> bool:
        return logger.isEnabledFor(logging.INFO)

    def on_retry(self, call: Call, event: RetryEvent) -> None:
        what = event.category or type(event.error).__name__
        code = "" if event.code is None else f" {event.code}"
        logger.info(
            "retry %s %s %s: attempt %d/%d failed with %s%s; waiting %.3f s",
            event.vendor,
            event.method,
            event.url,
            event.attempt,
            call.policy.retry.max_attempts,
            what,
            code,
            event.wait,
        )

    def on_rejection(self, call: Call, event: RejectionEvent) -> None:
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "%s %s %s: attempt %d not sent: %s (%s)",
                event.vendor,
                event.method,
                event.url,
                event.attempt,
                event.reason,
                event.strategy,
            )

    def on_wait(self, call: Call, event: WaitEvent) -> None:
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "%s %s %s: attempt %d waited %.3f s for %s",
                event.vendor,
                event.method,
                event.url,
                event.attempt,
                event.seconds,
                event.strategy,
            )
