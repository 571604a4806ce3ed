-- kiln inventory schema (PostgreSQL). Times are Unix milliseconds (UTC). JSON is stored as TEXT.
CREATE TABLE skus (
    id              TEXT PRIMARY KEY,
    description     TEXT NOT NULL,
    gpu_count       BIGINT NOT NULL,
    gpu_model       TEXT NOT NULL,
    gpu_memory_gib  BIGINT NOT NULL
);

CREATE TABLE sites (
    id          BIGSERIAL PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL
);

CREATE TABLE halls (
    id          BIGSERIAL PRIMARY KEY,
    site_id     BIGINT NOT NULL REFERENCES sites(id),
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    UNIQUE (site_id, name)
);

CREATE TABLE racks (
    id          BIGSERIAL PRIMARY KEY,
    hall_id     BIGINT NOT NULL REFERENCES halls(id),
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    UNIQUE (hall_id, name)
);

CREATE TABLE bmc_endpoints (
    id               BIGSERIAL PRIMARY KEY,
    address          TEXT NOT NULL UNIQUE,
    protocol         TEXT NOT NULL CHECK (protocol IN ('redfish', 'ipmi')),
    vendor           TEXT,
    username         TEXT NOT NULL,
    password_enc     TEXT NOT NULL,
    tls_fingerprint  TEXT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);

CREATE TABLE lessees (
    id          BIGSERIAL PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    contact     TEXT,
    created_at  BIGINT NOT NULL
);

CREATE TABLE hall_leases (
    id           BIGSERIAL PRIMARY KEY,
    hall_id      BIGINT NOT NULL REFERENCES halls(id),
    lessee_id    BIGINT NOT NULL REFERENCES lessees(id),
    starts_at    BIGINT NOT NULL,
    ends_at      BIGINT,
    acceptance   TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('active', 'released')),
    created_at   BIGINT NOT NULL,
    released_at  BIGINT
);

CREATE TABLE nodes (
    id                BIGSERIAL PRIMARY KEY,
    rack_id           BIGINT NOT NULL REFERENCES racks(id),
    slot              BIGINT NOT NULL,
    serial            TEXT NOT NULL UNIQUE,
    sku_id            TEXT NOT NULL REFERENCES skus(id),
    state             TEXT NOT NULL,
    bmc_id            BIGINT NOT NULL UNIQUE REFERENCES bmc_endpoints(id),
    boot_mac          TEXT NOT NULL UNIQUE,
    lease_id          BIGINT REFERENCES hall_leases(id),
    version           BIGINT NOT NULL DEFAULT 0,
    state_entered_at  BIGINT NOT NULL,
    next_check_at     BIGINT,
    claimed_by        TEXT,
    claim_expires_at  BIGINT,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    UNIQUE (rack_id, slot)
);
CREATE INDEX nodes_due ON nodes (next_check_at);
CREATE INDEX nodes_state ON nodes (state);

CREATE TABLE gpus (
    node_id     BIGINT NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
    idx         BIGINT NOT NULL,
    model       TEXT NOT NULL,
    uuid        TEXT,
    serial      TEXT,
    pci_bus_id  TEXT,
    memory_mib  BIGINT,
    vbios       TEXT,
    PRIMARY KEY (node_id, idx)
);

CREATE TABLE nics (
    node_id     BIGINT NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    mac         TEXT NOT NULL,
    speed_mbps  BIGINT,
    PRIMARY KEY (node_id, name)
);

CREATE TABLE disks (
    node_id     BIGINT NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    model       TEXT,
    serial      TEXT,
    size_bytes  BIGINT NOT NULL,
    PRIMARY KEY (node_id, name)
);

CREATE TABLE node_events (
    id          BIGSERIAL PRIMARY KEY,
    node_id     BIGINT NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
    at          BIGINT NOT NULL,
    actor       TEXT NOT NULL,
    from_state  TEXT,
    to_state    TEXT,
    reason      TEXT NOT NULL
);
CREATE INDEX node_events_node ON node_events (node_id, id);

CREATE TABLE health_runs (
    id           BIGSERIAL PRIMARY KEY,
    node_id      BIGINT NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
    kind         TEXT NOT NULL,
    passed       BIGINT NOT NULL,
    started_at   BIGINT NOT NULL,
    finished_at  BIGINT,
    evidence     TEXT NOT NULL
);
CREATE INDEX health_runs_node ON health_runs (node_id, id);

-- One row: a value encrypted under the site's secret key, so a wrong key is detected when the store opens.
CREATE TABLE secret_key_check (
    id     BIGINT PRIMARY KEY CHECK (id = 1),
    token  TEXT NOT NULL
);
