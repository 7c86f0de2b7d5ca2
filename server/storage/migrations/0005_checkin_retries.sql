-- A check-in was one per (call_id, status) for ever: a bridge that reuses a call id (its
-- counter reset by a restart, say) got back the first caller's check-in for a new
-- caller's request for a call, which was lost. Now a check-in is the same one only when
-- it is a retry: same call, status and caller, within RETRY_WINDOW_SECS (storage/base.py).
DROP INDEX checkins_call_status;
CREATE INDEX checkins_call_status ON checkins (call_id, status);
