-- Each node's firmware as last read (BMC FirmwareInventory, IPMI Get Device ID): one row per component, with
-- when it was last seen and when its version last changed. Changes are also node events (the history).
CREATE TABLE node_firmware (
    node_id     INTEGER NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
    component   TEXT NOT NULL,
    name        TEXT,
    version     TEXT,
    updateable  INTEGER,
    software_id TEXT,
    source      TEXT NOT NULL,
    seen_at     INTEGER NOT NULL,
    changed_at  INTEGER NOT NULL,
    PRIMARY KEY (node_id, component)
);
CREATE INDEX node_firmware_version ON node_firmware (component, version);
