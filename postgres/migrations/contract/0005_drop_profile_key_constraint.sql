-- After 0004 (the digest index): once no copy of a version older than 0004's runs (their
-- INSERTs name this constraint in ON CONFLICT and would fail without it), uniqueness
-- rests on orders_key_digest alone. Applied by `python -m function.migrate --contract`,
-- and at once on a database whose schema the same run created (no older copy can know it).
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_index JOIN pg_class ON pg_class.oid = pg_index.indexrelid
                   WHERE pg_class.relname = 'orders_key_digest' AND pg_index.indisvalid) THEN
        RAISE EXCEPTION 'orders_key_digest is not built (or not valid) yet: 0004 comes first';
    END IF;
END
$$;
SET LOCAL lock_timeout = '2s';
ALTER TABLE orders DROP CONSTRAINT IF EXISTS orders_profile_key_unique;
