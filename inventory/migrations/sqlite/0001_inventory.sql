-- kiln inventory schema (SQLite). Times are Unix milliseconds (UTC). JSON is stored as TEXT.
CREATE TABLE skus (
    id              TEXT PRIMARY KEY,
    description     TEXT NOT NULL,
    gpu_count       INTEGER NOT NULL,
    gpu_model       TEXT NOT NULL,
    gpu_memory_gib  INTEGER NOT NULL
);

CREATE TABLE sites (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL
);

CREATE TABLE halls (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    site_id     INTEGER NOT NULL REFERENCES sites(id),
    name        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    UNIQUE (site_id, name)
);

CREATE TABLE racks (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    hall_id     INTEGER NOT NULL REFERENCES halls(id),
    name        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    UNIQUE (hall_id, name)
);

CREATE TABLE bmc_endpoints (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    address          TEXT NOT NULL UNIQUE,
    protocol         TEXT NOT NULL CHECK (protocol IN ('redfish', 'ipmi')),
    vendor           TEXT,
    username         TEXT NOT NULL,
    password_enc     TEXT NOT NULL,
    tls_fingerprint  TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);

CREATE TABLE lessees (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL UNIQUE,
    contact     TEXT,
    created_at  INTEGER NOT NULL
);

CREATE TABLE hall_leases (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    hall_id      INTEGER NOT NULL REFERENCES halls(id),
    lessee_id    INTEGER NOT NULL REFERENCES lessees(id),
    starts_at    INTEGER NOT NULL,
    ends_at      INTEGER,
    acceptance   TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('active', 'released')),
    created_at   INTEGER NOT NULL,
    released_at  INTEGER
);

CREATE TABLE nodes (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    rack_id           INTEGER NOT NULL REFERENCES racks(id),
    slot              INTEGER NOT NULL,
    serial            TEXT NOT NULL UNIQUE,
    sku_id            TEXT NOT NULL REFERENCES skus(id),
    state             TEXT NOT NULL,
    bmc_id            INTEGER NOT NULL UNIQUE REFERENCES bmc_endpoints(id),
    boot_mac          TEXT NOT NULL UNIQUE,
    lease_id          INTEGER REFERENCES hall_leases(id),
    version           INTEGER NOT NULL DEFAULT 0,
    state_entered_at  INTEGER NOT NULL,
    next_check_at     INTEGER,
    claimed_by        TEXT,
    claim_expires_at  INTEGER,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    UNIQUE (rack_id, slot)
);
CREATE INDEX nodes_due ON nodes (next_check_at);
CREATE INDEX nodes_state ON nodes (state);

CREATE TABLE gpus (
    node_id     INTEGER NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
    idx         INTEGER NOT NULL,
    model       TEXT NOT NULL,
    uuid        TEXT,
    serial      TEXT,
    pci_bus_id  TEXT,
    memory_mib  INTEGER,
    vbios       TEXT,
    PRIMARY KEY (node_id, idx)
);

CREATE TABLE nics (
    node_id     INTEGER NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    mac         TEXT NOT NULL,
    speed_mbps  INTEGER,
    PRIMARY KEY (node_id, name)
);

CREATE TABLE disks (
    node_id     INTEGER NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    model       TEXT,
    serial      TEXT,
    size_bytes  INTEGER NOT NULL,
    PRIMARY KEY (node_id, name)
);

CREATE TABLE node_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    node_id     INTEGER NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
    at          INTEGER NOT NULL,
    actor       TEXT NOT NULL,
    from_state  TEXT,
    to_state    TEXT,
    reason      TEXT NOT NULL
);
CREATE INDEX node_events_node ON node_events (node_id, id);

CREATE TABLE health_runs (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    node_id      INTEGER NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
    kind         TEXT NOT NULL,
    passed       INTEGER NOT NULL,
    started_at   INTEGER NOT NULL,
    finished_at  INTEGER,
    evidence     TEXT NOT NULL
);
CREATE INDEX health_runs_node ON health_runs (node_id, id);

-- One row: a value encrypted under the site's secret key, so a wrong key is detected when the store opens.
CREATE TABLE secret_key_check (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    token  TEXT NOT NULL
);
