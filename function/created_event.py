"""The `com.example.order.created` event in HTTP binary mode: one builder for the reply
to an order event and for the event the outbox publishes, so both say the same.

Written without the CloudEvents SDK on purpose: binary mode is a few `ce-` headers, and
the publisher (events_out/) must not import events_in.py, which sits above it on the
request path."""

from __future__ import annotations

from collections.abc import Iterable

CREATED_TYPE = "com.example.order.created"
SOURCE = "/orders"


def created_event_headers(
    order_id: str, created_at: str, extensions: Iterable[tuple[str, str]] = (),
) -> dict[str, str]:
    """Every attribute comes from the order (the data is the order's answer bytes), so
    a redelivered request and a republished event carry identical ones."""
    headers = {
        "ce-specversion": "1.0", "ce-type": CREATED_TYPE, "ce-source": SOURCE,
        "ce-id": order_id, "ce-time": created_at, "content-type": "application/json",
    }
    for name, value in extensions:  # K_CE_OVERRIDES, checked by settings.py
        headers["ce-" + name] = value
    return headers
