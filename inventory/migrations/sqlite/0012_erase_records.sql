-- Disk erase records: one row per device per erase, as the node agent reported it between two tenants.
-- batch: the node's erase runs counted from 1 (the latest batch is the node's latest turnover); lease_id: the lease
-- that had ended (NULL when none is known); report_id: the agent report that carried the records (a report is
-- stored once, so recording it again returns the batch it already has); record_json: the whole EraseRecord
-- (the JSON contract), the other columns are copies of its fields for queries.
CREATE TABLE erase_records (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    node_id      BIGINT NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
    batch        BIGINT NOT NULL,
    lease_id     BIGINT,
    report_id    BIGINT,
    device       TEXT NOT NULL,
    method       TEXT,
    nist         TEXT,
    result       TEXT NOT NULL CHECK (result IN ('ok', 'failed')),
    verified     BIGINT NOT NULL,
    started_at   BIGINT NOT NULL,
    finished_at  BIGINT NOT NULL,
    recorded_at  BIGINT NOT NULL,
    record_json  TEXT NOT NULL
);
CREATE INDEX erase_records_node ON erase_records (node_id, batch, id);
