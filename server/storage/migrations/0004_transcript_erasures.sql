-- Erases, kept for as long as their session: a line is stored only if no erase covers
-- it. Several nodes record a room's lines, each from its own queue; during an outage a
-- node may still hold a line when another has written its erase, and the line must
-- not come back when that node catches up. Ids only, never text or names.
-- line_id: one message (a moderator removed it). sender_id and up_to: every line of
-- that participant sent at or before up_to (they erased their own; later lines, after
-- opting in again, are theirs to keep).
CREATE TABLE transcript_erasures (
    id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL,
    line_id TEXT,
    sender_id TEXT,
    up_to DOUBLE PRECISION
);
CREATE INDEX transcript_erasures_session ON transcript_erasures (session_id);
