-- W3's second ceiling: ONE INSERT of the user, no event (what a service that
-- writes no outbox does per create). The same-statement ceiling above is
-- the fair one; this one says what the event costs.
\set k :k + 1
INSERT INTO users (name, email)
VALUES ('pgbench user', 'pgi-' || :nonce || '-' || :client_id || '-' || :k || '@example.com')
RETURNING id, name, email, created_at, updated_at;
