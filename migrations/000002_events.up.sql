-- Transactional outbox: every user change inserts one row here in the same
-- transaction as the change; the outbox worker delivers pending rows
-- (delivered_at IS NULL) at least once, retrying with back-off.
CREATE TABLE events (
    id              uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    type            text        NOT NULL,
    payload         jsonb       NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    delivered_at    timestamptz,
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text
);

-- The worker's scan: pending rows that are due, oldest first. Partial, so
-- it stays as small as the backlog however many rows were delivered.
CREATE INDEX events_pending_idx ON events (next_attempt_at, created_at)
    WHERE delivered_at IS NULL;
