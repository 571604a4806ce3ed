-- API tokens, drained nodes, one active lease per hall, and lease history.
CREATE TABLE api_tokens (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    token_hash  TEXT NOT NULL UNIQUE,
    role        TEXT NOT NULL CHECK (role IN ('admin', 'technician', 'pipeline', 'lessee')),
    lessee_id   INTEGER REFERENCES lessees(id),
    label       TEXT,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);

ALTER TABLE nodes ADD COLUMN drained INTEGER NOT NULL DEFAULT 0;

-- At most one active lease per hall: the second of two concurrent lease attempts fails here.
CREATE UNIQUE INDEX hall_leases_one_active ON hall_leases (hall_id) WHERE status = 'active';

CREATE TABLE lease_events (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    lease_id  INTEGER NOT NULL REFERENCES hall_leases(id),
    at        INTEGER NOT NULL,
    actor     TEXT NOT NULL,
    kind      TEXT NOT NULL,
    detail    TEXT NOT NULL
);
CREATE INDEX lease_events_lease ON lease_events (lease_id, id);
