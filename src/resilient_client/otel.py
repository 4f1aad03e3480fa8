"""OpenTelemetry for every ResilientTransport (the ``otel`` extra: ``pip install resilient-client[otel]``).

::

    import resilient_client.otel

    resilient_client.otel.instrument()      # the global tracer and meter providers
    ...
    resilient_client.otel.uninstrument()

``instrument()`` reaches every transport and vendor client, those built before it too; until it is
called (and after ``uninstrument()``) a call pays nothing for it. ``OpenTelemetryHook`` instruments
one transport or client instead: ``hooks=[OpenTelemetryHook(tracer_provider=...)]``.
"""

from __future__ import annotations

import threading

try:
    from opentelemetry import metrics, trace
except ImportError as exc:  # pragma: no cover - the test runs it in a process without OpenTelemetry
    raise ImportError(
        "resilient_client.otel needs OpenTelemetry, which is not installed: "
        "pip install resilient-client[otel]",
        name=exc.name,
    ) from exc

from resilient_client import __version__
from resilient_client._pipeline import add_global_hook, remove_global_hook
from resilient_client.instrumentation.otel import OpenTelemetryHook

__all__ = ["OpenTelemetryHook", "instrument", "is_instrumented", "uninstrument"]

_lock = threading.Lock()
_installed: OpenTelemetryHook | None = None


def instrument(
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
) -> None:
    """Trace every call of every ResilientTransport and record its metrics, with these providers
    (default: OpenTelemetry's global ones). Calling it again replaces the providers."""
    global _installed
    hook = OpenTelemetryHook(tracer_provider, meter_provider, version=__version__)
    with _lock:
        if _installed is not None:
            _retire(_installed)
        add_global_hook(hook)
        _installed = hook


def uninstrument() -> None:
    """Stop what ``instrument()`` started (nothing happens when it was not called)."""
    global _installed
    with _lock:
        if _installed is not None:
            _retire(_installed)
            _installed = None


def _retire(hook: OpenTelemetryHook) -> None:
    # New calls go untraced at once; the hook leaves every transport when its last call ends.
    hook.retire(lambda: remove_global_hook(hook))


def is_instrumented() -> bool:
    """True between ``instrument()`` and ``uninstrument()``."""
    return _installed is not None
