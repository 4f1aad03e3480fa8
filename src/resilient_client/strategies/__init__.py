"""The resilience strategies, outermost first: retry (asking the budget) -> circuit breaker -> rate
limiter -> guard -> send. Each module holds one strategy's logic over a StateStore, with no I/O of
its own beyond the store and no clock of its own (callers pass ``now``); the sync and async shells
that sleep and send live with the pipeline.
"""
