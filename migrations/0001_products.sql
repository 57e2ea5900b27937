-- Products, with the version of the write that each row holds. Deleted products stay as
-- tombstones so that an older write can never bring them back.
CREATE TABLE products (
    id         TEXT PRIMARY KEY CHECK (char_length(id) BETWEEN 1 AND 64),
    name       TEXT NOT NULL CHECK (char_length(name) <= 200),
    price      NUMERIC(12, 2) NOT NULL CHECK (price >= 0),
    quantity   INTEGER NOT NULL CHECK (quantity >= 0),
    version    BIGINT NOT NULL,
    deleted    BOOLEAN NOT NULL DEFAULT FALSE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Markers shared with Redis, such as the epoch that reveals a loss of Redis data.
CREATE TABLE wbc_meta (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
