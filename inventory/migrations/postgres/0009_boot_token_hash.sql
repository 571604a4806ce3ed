-- Boot tokens are stored only as the lowercase hex SHA-256 of the token, like API tokens: a copy of the database
-- does not let anyone post reports as a node. Tokens issued before this change are dropped (they live for one
-- boot; the next boot script issues a fresh one).
DELETE FROM boot_tokens;
ALTER TABLE boot_tokens RENAME COLUMN token TO token_hash;
