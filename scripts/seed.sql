-- The seed lab's ten products. Version 1 is older than any version the API issues.
INSERT INTO products (id, name, price, quantity, version)
SELECT format('seed-%s', lpad(n::text, 3, '0')), format('Seed Product %s', n), round((n * 10 + 0.99)::numeric, 2), n * 10, 1
FROM generate_series(1, 10) AS n
ON CONFLICT (id) DO NOTHING;
