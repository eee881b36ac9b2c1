-- The event payload is the user exactly as the API shows it, and the outbox
-- worker embeds it verbatim (`payload::text`) as the CloudEvent's `data`.
-- jsonb re-serialises (sorts keys, adds spaces), so the column becomes json,
-- which keeps the text as written (and still rejects text that is not JSON).
ALTER TABLE events ALTER COLUMN payload TYPE json USING payload::text::json;

-- The API representation of a user, rendered in SQL for the event payloads
-- of the single-statement writes (src/users/pg_repository.rs): the same bytes
-- as `User::to_json_string` in src/users/model.rs (member order, no spaces,
-- JSON string escaping, UTC timestamps with six fractional digits). A test
-- (tests/users_events.rs) pins the two byte for byte.
CREATE FUNCTION user_json(id bigint, name text, email text,
                          created_at timestamptz, updated_at timestamptz)
RETURNS text
LANGUAGE sql STABLE STRICT PARALLEL SAFE
RETURN '{"id":' || id::text
    || ',"name":' || to_json(name)::text
    || ',"email":' || to_json(email)::text
    || ',"created_at":"' || to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
    || '","updated_at":"' || to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
    || '"}';
