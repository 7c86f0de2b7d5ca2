-- Durable rooms: a standing group and the settings each new session starts with.
CREATE TABLE rooms (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    phone_pin TEXT NOT NULL UNIQUE,
    waiting_room BOOLEAN NOT NULL DEFAULT FALSE,
    transcripts_allowed BOOLEAN NOT NULL DEFAULT TRUE,
    chat_enabled BOOLEAN NOT NULL DEFAULT TRUE,
    queue_order TEXT NOT NULL DEFAULT 'time',
    created_at DOUBLE PRECISION NOT NULL
);
