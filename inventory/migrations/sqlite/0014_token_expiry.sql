-- API tokens may expire: past expires_at (ms since the epoch) a token no longer authenticates.
ALTER TABLE api_tokens ADD COLUMN expires_at INTEGER;
-- When the token last authenticated (ms since the epoch), kept to the minute: written at most once a minute.
ALTER TABLE api_tokens ADD COLUMN last_used_at INTEGER;
