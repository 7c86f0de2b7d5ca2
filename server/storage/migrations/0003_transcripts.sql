-- Sessions, opt-in transcript lines, consent changes, and (audit_log) the removals and
-- bans the transcript access rule reads. Ids and pseudonyms of participants who opted
-- in only: one who never did appears nowhere here, not even by id (consent and audit
-- rows carry ids, never names; an audit row is kept only for the removal or ban of
-- someone who opted in, with the moderator's id only if they did too, else ''). Rows
-- written by versions before that (every moderator action, every id) go at retention.
CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    started_at DOUBLE PRECISION NOT NULL,
    ended_at DOUBLE PRECISION,
    end_reason TEXT
);
CREATE INDEX sessions_room ON sessions (room_id, started_at);
CREATE INDEX sessions_started ON sessions (started_at);
-- One row per chat line that passed the consent rule; id is the chat message id.
CREATE TABLE transcript_lines (
    id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    sender_id TEXT NOT NULL,
    from_name TEXT NOT NULL,
    text TEXT NOT NULL,
    ts DOUBLE PRECISION NOT NULL
);
CREATE INDEX transcript_lines_session ON transcript_lines (session_id, ts);
CREATE INDEX transcript_lines_sender ON transcript_lines (session_id, sender_id);
CREATE INDEX transcript_lines_ts ON transcript_lines (ts);
CREATE TABLE consent_changes (
    id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    participant_id TEXT NOT NULL,
    consent BOOLEAN NOT NULL,
    ts DOUBLE PRECISION NOT NULL
);
CREATE INDEX consent_changes_participant ON consent_changes (session_id, participant_id, ts);
CREATE TABLE audit_log (
    id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    actor_id TEXT NOT NULL,
    action TEXT NOT NULL,
    target_id TEXT,
    ts DOUBLE PRECISION NOT NULL
);
CREATE INDEX audit_log_session ON audit_log (session_id, ts);
CREATE INDEX audit_log_target ON audit_log (session_id, target_id);
