-- 10,000 (:n) users in one statement; emails seed-N@example.com.
INSERT INTO users (name, email)
SELECT 'Seed User ' || g, 'seed-' || g || '@example.com'
FROM generate_series(1, :n) AS g;
