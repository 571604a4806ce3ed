-- The lifecycle engine's durable memory per node, and the agent's reports.
-- work: the engine's record for the node (JSON text: intents with their times, pinned SSH host key, failure being
-- remediated with its attempts); wake_seq: bumped by every event that should wake the node at once (an agent
-- report), so a handler that was running when the event came reschedules the node immediately.
ALTER TABLE nodes ADD COLUMN work TEXT;
ALTER TABLE nodes ADD COLUMN wake_seq BIGINT NOT NULL DEFAULT 0;

CREATE TABLE agent_reports (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    node_id  BIGINT NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
    at       BIGINT NOT NULL,
    step     TEXT NOT NULL,
    body     TEXT NOT NULL
);
CREATE INDEX agent_reports_node ON agent_reports (node_id, id);
