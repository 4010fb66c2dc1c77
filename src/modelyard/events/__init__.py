"""Outbox readers: the webhook dispatcher and its HTTP sender.

The event stream (SSE) is served by ``modelyard.api.v1.events`` on the same
service reads; see docs/events.md for the event types and the webhook format.
"""
