-- Orders, with the unique (profile, key) constraint that is the ground truth of
-- idempotency: whatever Redis holds or loses, a second order for a key cannot exist.
CREATE TABLE orders (
    order_id          uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    -- Sequential, not gapless: an INSERT that loses ON CONFLICT still uses a number.
    -- Unique by construction (GENERATED ALWAYS); no table-wide unique index on purpose:
    -- the planner would walk it backwards past every other profile's orders to serve
    -- an old page of one profile, instead of using orders_profile_newest below.
    order_number      bigint      GENERATED ALWAYS AS IDENTITY,
    profile_id        text        NOT NULL CHECK (profile_id ~ '^[A-Za-z0-9._:-]{1,64}$'),
    -- NULL only when IDEMPOTENCY_KEY_REQUIRED=false and the client sent none.
    idempotency_key   text        CHECK (char_length(idempotency_key) BETWEEN 1 AND 255),
    fingerprint       text        NOT NULL,
    product_id        text        CHECK (char_length(product_id) BETWEEN 1 AND 64),
    product_quantity  integer     NOT NULL CHECK (product_quantity BETWEEN 1 AND 10000),
    created_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT orders_profile_key_unique UNIQUE (profile_id, idempotency_key)
);

-- GET /orders: newest first for one profile, continuing below a cursor. Its cost
-- depends on the page size, not on how many orders the profile or the table has.
CREATE INDEX orders_profile_newest ON orders (profile_id, order_number DESC);
