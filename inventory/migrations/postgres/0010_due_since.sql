-- When a node was made due ahead of the engine's queue (woken by an event or moved to a new working state), its
-- next_check_at is set back by an hour so claims take it before routine rechecks; due_since keeps the real time
-- it became due, so the engine can tell time spent waiting in its own backlog from the node's own time in a
-- state. NULL: the node became due at next_check_at.
ALTER TABLE nodes ADD COLUMN due_since BIGINT;
