-- The image catalog: one row per (name, version); the bytes live in kiln-images' content-addressed store under
-- their sha256, so a digest appears at most once. Times are Unix milliseconds (UTC).
CREATE TABLE images (
    id              BIGSERIAL PRIMARY KEY,
    name            TEXT NOT NULL,
    version         TEXT NOT NULL,
    os              TEXT,
    format          TEXT NOT NULL,
    size_bytes      BIGINT NOT NULL,
    sha256          TEXT NOT NULL UNIQUE,
    signature       TEXT,
    signing_key_id  TEXT,
    created_at      BIGINT NOT NULL,
    UNIQUE (name, version)
);
