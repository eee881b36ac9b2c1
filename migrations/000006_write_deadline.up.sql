-- The write fence (src/db/pool.rs, `write_one`): every single-statement
-- write carries the moment after which it must not be applied, and calls
-- this function before it changes anything.
--
-- Why: the service cuts a database call that passes its client-side
-- deadline and answers 503. A database host that froze (SIGSTOP, a stalled
-- VM) still holds the statement in its socket buffer; when it thaws it
-- would run and commit it, and a client told 503 would find its user
-- stored. With the fence the thawed backend raises instead, and the
-- statement changes nothing.
--
-- The deadline is the service's clock; the check is the database's
-- (clock_timestamp(), the real time, not the transaction's start). The two
-- must agree to well within DB_STATEMENT_TIMEOUT (NTP does): a database
-- clock ahead of the service's by more than that refuses every write, which
-- the service reports as such.
CREATE FUNCTION usersvc_apply_by(deadline timestamptz)
RETURNS boolean
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
AS $$
BEGIN
    IF clock_timestamp() > deadline THEN
        RAISE EXCEPTION 'usersvc: write arrived after its deadline %, not applied', deadline
            USING ERRCODE = 'UD001';
    END IF;
    RETURN true;
END
$$;
