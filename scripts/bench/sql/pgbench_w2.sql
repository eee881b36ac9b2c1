-- W2 ceiling: the point select GET /api/v1/users/{id} runs (autocommit, one statement).
\set id random(1, 10000)
SELECT id, name, email, created_at, updated_at FROM users WHERE id = :id;
