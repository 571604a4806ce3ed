-- Network boot: DHCP leases, machines seen on the provisioning network that are not enrolled, and the per-boot
-- tokens the ramdisk's agent presents. Times are Unix milliseconds (UTC); MACs are lowercase aa:bb:cc:dd:ee:ff.
CREATE TABLE dhcp_leases (
    ip          TEXT PRIMARY KEY,
    mac         TEXT UNIQUE,
    node_id     BIGINT REFERENCES nodes(id) ON DELETE SET NULL,
    hostname    TEXT,
    state       TEXT NOT NULL CHECK (state IN ('bound', 'released', 'declined')),
    pinned      BIGINT NOT NULL DEFAULT 0,
    expires_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE discovered_machines (
    mac            TEXT PRIMARY KEY,
    first_seen_at  BIGINT NOT NULL,
    last_seen_at   BIGINT NOT NULL,
    last_ip        TEXT,
    client_arch    TEXT,
    vendor_class   TEXT,
    seen_count     BIGINT NOT NULL,
    reported_at    BIGINT
);

CREATE TABLE boot_tokens (
    mac        TEXT PRIMARY KEY,
    node_id    BIGINT REFERENCES nodes(id) ON DELETE CASCADE,
    token      TEXT NOT NULL,
    issued_at  BIGINT NOT NULL
);
