-- Order ids that grow with time (UUIDv7, RFC 9562: 48 bits of Unix milliseconds, the
-- version, 74 random bits), so orders_pkey takes every new order at its right edge
-- instead of on a random page that the next checkpoint makes it log whole (docs/design.md,
-- "Where a create writes"). Still a UUID: existing orders keep their v4 ids. Made by the
-- column's default, so one INSERT serves a batch, copies need no clock agreement beyond
-- the milliseconds, and a copy of the previous version (which leaves order_id to the
-- default too) makes v7 ids as well during a rolling update.
CREATE OR REPLACE FUNCTION orders_uuid_v7() RETURNS uuid
LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
    SELECT encode(
        set_bit(set_bit(
            overlay(uuid_send(gen_random_uuid())
                    placing substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
                    FROM 1 FOR 6),
            52, 1), 53, 1),  -- version nibble 0100 (v4) -> 0111 (v7); the variant stays 10
        'hex')::uuid
$$;

-- Metadata only (no rewrite), but it takes the table's ACCESS EXCLUSIVE lock for a moment:
-- wait at most 2 s behind a running transaction, so creates queue behind it no longer.
SET LOCAL lock_timeout = '2s';
ALTER TABLE orders ALTER COLUMN order_id SET DEFAULT orders_uuid_v7();
