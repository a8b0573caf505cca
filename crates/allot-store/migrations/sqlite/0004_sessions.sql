-- Console sessions (`allot serve`'s web console): only the SHA-256 of the session token is kept,
-- with the key that signed in; `expires_at` is absolute, in Unix seconds.
CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    key_id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX sessions_by_key ON sessions (key_id);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);
