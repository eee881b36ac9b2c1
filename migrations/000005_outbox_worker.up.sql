-- The outbox worker's bookkeeping. Writers are unchanged: the new column is
-- nullable and the user id is read from the payload at query time
-- (payload->>'id' works whether payload is json or jsonb).
--
-- failed_at: set when an event is parked (attempts exhausted, or a 4xx the
-- receiver will never accept); its next_attempt_at is then 'infinity', so
-- the due scan (events_pending_idx) never returns it again.
ALTER TABLE events ADD COLUMN failed_at timestamptz;

-- Per-user creation order: an event is due only when no earlier event of
-- the same user is still pending. This partial index answers that
-- question and stays as small as the backlog.
CREATE INDEX events_pending_user_idx ON events ((payload->>'id'), created_at)
    WHERE delivered_at IS NULL AND failed_at IS NULL;

-- Retention: delivered events older than OUTBOX_RETENTION are purged in
-- small batches, oldest first.
CREATE INDEX events_delivered_at_idx ON events (delivered_at)
    WHERE delivered_at IS NOT NULL;
