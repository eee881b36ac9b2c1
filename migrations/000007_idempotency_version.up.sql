-- The created user's version beside an idempotency key's stored response,
-- so that a replayed 201 carries the same `ETag` as the first one did (the
-- body alone does not give it back without parsing our own JSON). NULL for
-- keys stored before this migration: their replays carry no `ETag`, as
-- they never did. Adding a nullable column rewrites nothing.
ALTER TABLE idempotency_keys ADD COLUMN resource_version timestamptz;
