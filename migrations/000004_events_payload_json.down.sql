DROP FUNCTION IF EXISTS user_json(bigint, text, text, timestamptz, timestamptz);
ALTER TABLE events ALTER COLUMN payload TYPE jsonb USING payload::jsonb;
