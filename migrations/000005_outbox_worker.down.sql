DROP INDEX IF EXISTS events_delivered_at_idx;
DROP INDEX IF EXISTS events_pending_user_idx;
ALTER TABLE events DROP COLUMN IF EXISTS failed_at;
