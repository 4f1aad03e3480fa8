"""Hooks that turn the pipeline's events into something a person or a system reads.

``LoggingHook`` is always on (the ``resilient_client`` logger); ``resilient_client.otel`` adds
OpenTelemetry traces and metrics when its extra is installed. A hook of your own subclasses
``resilient_client.Hook`` and goes in ``hooks=`` of a transport or client.
"""

from resilient_client.instrumentation._logging import LoggingHook

__all__ = ["LoggingHook"]
