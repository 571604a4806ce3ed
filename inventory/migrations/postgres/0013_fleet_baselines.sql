-- Fleet baselines: each node's latest figure per metric (NCCL busbw, stress throughput), with the hall and SKU
-- it was measured in, and per hall, SKU and metric the distribution over those nodes, recomputed as figures come in.
CREATE TABLE node_metrics (
    node_id      BIGINT NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
    metric       TEXT NOT NULL,
    hall_id      BIGINT NOT NULL,
    sku          TEXT NOT NULL,
    value        DOUBLE PRECISION NOT NULL,
    recorded_at  BIGINT NOT NULL,
    PRIMARY KEY (node_id, metric)
);
CREATE INDEX node_metrics_hall ON node_metrics (hall_id, sku, metric);

CREATE TABLE fleet_baselines (
    hall_id      BIGINT NOT NULL,
    sku          TEXT NOT NULL,
    metric       TEXT NOT NULL,
    distribution TEXT NOT NULL,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (hall_id, sku, metric)
);
