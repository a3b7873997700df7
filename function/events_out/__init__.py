"""Order events out: the optional part, on only when K_SINK is set. Each created order's
event is recorded in the outbox with the order (outbox.py), published right after the
commit and swept for what is left (relay.py), one POST to the sink at a time
(publisher.py). The event's identity (created_event.py) lives below this package,
shared with events in and tracing; nothing here imports the request path above it."""
