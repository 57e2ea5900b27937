-- Versions PostgreSQL issued for writes that bypassed Redis (the write-through fallback while
-- Redis is unreachable), recorded in the statement that writes the row. Redis has not seen them:
-- until one is applied there (the key's version raised to it, older cached values dropped), Redis
-- may still serve or version the key as if the write had not happened. The API that wrote the
-- row applies it when it next reaches Redis, the worker within a second; then the row goes.
CREATE TABLE wbc_fallback_versions (
    id      TEXT PRIMARY KEY,
    version BIGINT NOT NULL
);
