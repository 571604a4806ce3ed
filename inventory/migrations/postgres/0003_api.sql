-- API tokens, drained nodes, one active lease per hall, and lease history.
CREATE TABLE api_tokens (
    id          BIGSERIAL PRIMARY KEY,
    token_hash  TEXT NOT NULL UNIQUE,
    role        TEXT NOT NULL CHECK (role IN ('admin', 'technician', 'pipeline', 'lessee')),
    lessee_id   BIGINT REFERENCES lessees(id),
    label       TEXT,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);

ALTER TABLE nodes ADD COLUMN drained BIGINT NOT NULL DEFAULT 0;

-- At most one active lease per hall: the second of two concurrent lease attempts fails here.
CREATE UNIQUE INDEX hall_leases_one_active ON hall_leases (hall_id) WHERE status = 'active';

CREATE TABLE lease_events (
    id        BIGSERIAL PRIMARY KEY,
    lease_id  BIGINT NOT NULL REFERENCES hall_leases(id),
    at        BIGINT NOT NULL,
    actor     TEXT NOT NULL,
    kind      TEXT NOT NULL,
    detail    TEXT NOT NULL
);
CREATE INDEX lease_events_lease ON lease_events (lease_id, id);
