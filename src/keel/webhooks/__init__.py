"""Webhooks: endpoints users register, deliveries of domain events to them, and the outbox.

Importing the package subscribes webhooks to domain events (keel.webhooks.events), in every
process that imports it: the API (its router) and the worker (its jobs).
"""

from keel.webhooks import events as _subscription  # noqa: F401
