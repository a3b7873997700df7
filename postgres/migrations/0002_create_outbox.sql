-- Order events not yet delivered to K_SINK (docs/events-out.md). A row is written by
-- the same statement as its order, so an order exists if and only if its event is
-- recorded; it is deleted once the sink answered 2xx, so the table holds only what is
-- pending. The event's data is not copied here: it is the order row itself, rendered
-- as GET /orders/{orderId} renders it, so a republish sends the same bytes.
CREATE TABLE outbox (
    order_id         uuid        PRIMARY KEY REFERENCES orders (order_id) ON DELETE CASCADE,
    recorded_at      timestamptz NOT NULL DEFAULT now(),
    -- Attempts claimed so far (the committing copy's first POST is the first).
    attempts         integer     NOT NULL DEFAULT 1,
    -- Not before this may a sweep take the row: while one copy posts it (a lease a
    -- little longer than the POST may take) and after a failure (a backoff per event).
    next_attempt_at  timestamptz NOT NULL
);

-- The sweep: the oldest due rows first.
CREATE INDEX outbox_due ON outbox (next_attempt_at);
