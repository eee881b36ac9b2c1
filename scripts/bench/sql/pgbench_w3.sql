-- W3 ceiling: what POST /api/v1/users runs, in one transaction: the insert
-- (RETURNING the user, as the API answers it), then its user.created event.
-- Emails are unique by construction: run nonce (-D nonce=...), client id and a
-- per-client counter (-D k=0, pgbench variables persist across transactions).
\set k :k + 1
BEGIN;
INSERT INTO users (name, email) VALUES ('pgbench user', 'pgb-' || :nonce || '-' || :client_id || '-' || :k || '@example.com')
  RETURNING id, name, email, created_at, updated_at \gset u_
INSERT INTO events (type, payload) VALUES ('user.created',
  jsonb_build_object('id', :u_id::bigint, 'name', :u_name::text, 'email', :u_email::text,
                     'created_at', :u_created_at::text, 'updated_at', :u_updated_at::text));
COMMIT;
