-- W3 ceiling: the statement POST /api/v1/users runs (src/users/pg_repository.rs,
-- CREATE_USER): the user and its user.created event in ONE autocommit statement,
-- the payload rendered by user_json (migration 000004), the insert guarded by
-- the write fence usersvc_apply_by (migration 000006) with the deadline the
-- service sends (now + DB_STATEMENT_TIMEOUT, 5 s by default). The fence is a
-- PL/pgSQL call: ~11,500 instructions of PostgreSQL's per statement (callgrind,
-- `postgres --single`), ~3% of the statement's cost, which a ceiling without
-- it would wrongly count against the service.
-- The service passes its own clock for the timestamps; pgbench uses now().
-- Emails are unique by construction: run nonce (-D nonce=...), client id and a
-- per-client counter (-D k=0, pgbench variables persist across transactions).
\set k :k + 1
WITH u AS (
  INSERT INTO users (name, email, created_at, updated_at)
  SELECT 'pgbench user', 'pgb-' || :nonce || '-' || :client_id || '-' || :k || '@example.com', now(), now()
  WHERE usersvc_apply_by(now() + interval '5 s')
  RETURNING id, name, email, created_at, updated_at),
e AS (INSERT INTO events (type, payload)
  SELECT 'user.created', user_json(id, name, email, created_at, updated_at)::json FROM u)
SELECT id, name, email, created_at, updated_at FROM u;
