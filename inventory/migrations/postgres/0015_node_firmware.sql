-- Each node's firmware as last read (BMC FirmwareInventory, IPMI Get Device ID): one row per component, with
-- when it was last seen and when its version last changed. Changes are also node events (the history).
CREATE TABLE node_firmware (
    node_id     BIGINT NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
    component   TEXT NOT NULL,
    name        TEXT,
    version     TEXT,
    updateable  BIGINT,
    software_id TEXT,
    source      TEXT NOT NULL,
    seen_at     BIGINT NOT NULL,
    changed_at  BIGINT NOT NULL,
    PRIMARY KEY (node_id, component)
);
CREATE INDEX node_firmware_version ON node_firmware (component, version);
