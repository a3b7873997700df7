-- migrate: no-transaction
-- (profile, key) unique through a 16-byte digest: an entry is 24 bytes instead of ~130
-- (profile and key text), so each leaf page holds ~5x the entries and a checkpoint
-- interval's random inserts touch ~5x fewer pages (docs/design.md). An expression index:
-- no new column, and the rows written before it are covered too. The key stays in the
-- row; every read on the conflict path compares profile and key themselves, so two keys
-- with one digest can never answer with each other's order (function/orders.py).
--
-- CONCURRENTLY: creates go on while it is built (minutes on tens of millions of orders;
-- docs/operations.md). A contract step, built only once no copy of the previous version
-- runs: that version's INSERT names the old constraint in ON CONFLICT, so a second unique
-- index would turn its race with a new copy on one key (the two versions' Redis records
-- do not see each other) into a unique violation, a 500, instead of a skipped row.
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS orders_key_digest
    ON orders ((CAST(md5(profile_id || '/' || idempotency_key) AS uuid)));
