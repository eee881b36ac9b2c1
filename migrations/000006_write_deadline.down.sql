DROP FUNCTION usersvc_apply_by(timestamptz);
