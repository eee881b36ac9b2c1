-- Idempotency-Key support for POST /api/v1/users. A row is inserted first
-- in the creating transaction (a concurrent request with the same key waits
-- on the primary key, then replays the stored response). Rows expire after
-- 24 hours: expired rows are ignored and replaced on reuse, and purged in
-- batches by created_at. response_* are NULL only inside the creating
-- transaction, so no other session ever sees them NULL.
CREATE TABLE idempotency_keys (
    key             text        PRIMARY KEY CHECK (char_length(key) BETWEEN 1 AND 255),
    fingerprint     text        NOT NULL,
    response_status smallint,
    response_body   text,
    resource_id     bigint,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX idempotency_keys_created_at_idx ON idempotency_keys (created_at);
