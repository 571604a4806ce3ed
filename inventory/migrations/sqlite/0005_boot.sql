-- Network boot: DHCP leases, machines seen on the provisioning network that are not enrolled, and the per-boot
-- tokens the ramdisk's agent presents. Times are Unix milliseconds (UTC); MACs are lowercase aa:bb:cc:dd:ee:ff.
CREATE TABLE dhcp_leases (
    ip          TEXT PRIMARY KEY,
    mac         TEXT UNIQUE,
    node_id     INTEGER REFERENCES nodes(id) ON DELETE SET NULL,
    hostname    TEXT,
    state       TEXT NOT NULL CHECK (state IN ('bound', 'released', 'declined')),
    pinned      INTEGER NOT NULL DEFAULT 0,
    expires_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE discovered_machines (
    mac            TEXT PRIMARY KEY,
    first_seen_at  INTEGER NOT NULL,
    last_seen_at   INTEGER NOT NULL,
    last_ip        TEXT,
    client_arch    TEXT,
    vendor_class   TEXT,
    seen_count     INTEGER NOT NULL,
    reported_at    INTEGER
);

CREATE TABLE boot_tokens (
    mac        TEXT PRIMARY KEY,
    node_id    INTEGER REFERENCES nodes(id) ON DELETE CASCADE,
    token      TEXT NOT NULL,
    issued_at  INTEGER NOT NULL
);
