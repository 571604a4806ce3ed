-- What kiln last saw of each node's BMC (written by `kiln bmc sweep`): whether it answered, the last power
-- state read from it and when. An observation, not the node's lifecycle state, which only the lifecycle engine
-- changes. Times are Unix milliseconds (UTC).
CREATE TABLE bmc_observations (
    node_id        BIGINT PRIMARY KEY REFERENCES nodes(id) ON DELETE CASCADE,
    reachable      BIGINT NOT NULL,
    power_state    TEXT CHECK (power_state IN ('on', 'off', 'powering_on', 'powering_off')),
    power_seen_at  BIGINT,
    checked_at     BIGINT NOT NULL,
    error_kind     TEXT,
    error          TEXT
);
