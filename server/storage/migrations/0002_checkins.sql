-- Phone check-ins: "I'm OK", "please call me back", "I'd like to talk now".
-- caller_full is kept only for callback and talk check-ins (someone must call back);
-- otherwise only the masked form (last two digits) is stored.
CREATE TABLE checkins (
    id TEXT PRIMARY KEY,
    room_id TEXT,
    call_id TEXT NOT NULL,
    status TEXT NOT NULL,
    caller_masked TEXT NOT NULL,
    caller_full TEXT,
    created_at DOUBLE PRECISION NOT NULL,
    resolved_at DOUBLE PRECISION,
    resolved_by TEXT
);
CREATE UNIQUE INDEX checkins_call_status ON checkins (call_id, status);
CREATE INDEX checkins_created ON checkins (created_at);
