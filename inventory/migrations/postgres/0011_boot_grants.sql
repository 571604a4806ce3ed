-- Boot grants: a token is issued only for a network boot the engine asked for. The engine opens a grant for the
-- node (one per boot intent, identified by the intent's time) with a window; the first script fetch inside that
-- window, from the address the DHCP server leased to that MAC, gets the token, and no later fetch does.
CREATE TABLE boot_grants (
    node_id BIGINT PRIMARY KEY,
    intent_at BIGINT NOT NULL,
    opened_at BIGINT NOT NULL,
    window_ends_at BIGINT NOT NULL,
    issued_at BIGINT,
    issued_mac TEXT,
    issued_to TEXT,
    refused_fetches BIGINT NOT NULL DEFAULT 0
);
-- A token is bound to the address it was fetched from and expires; reports from elsewhere or later are refused.
-- Tokens from before this change had neither and are dropped (they live for one boot).
DELETE FROM boot_tokens;
ALTER TABLE boot_tokens ADD COLUMN bound_ip TEXT;
ALTER TABLE boot_tokens ADD COLUMN expires_at BIGINT;
-- Every agent report carries a nonce; a replayed report (same node, same nonce) is refused, not stored twice.
ALTER TABLE agent_reports ADD COLUMN nonce TEXT;
CREATE UNIQUE INDEX agent_reports_node_nonce ON agent_reports (node_id, nonce);
