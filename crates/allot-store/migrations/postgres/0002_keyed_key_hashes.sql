-- API keys are stored as a keyed hash, HMAC-SHA256(store salt, SHA-256 hex of the secret), instead of
-- a bare SHA-256: the salt is random per store. `hash_scheme` 1 marks a row still holding the bare
-- SHA-256; the store converts such rows when it opens (it can: the keyed hash is over the SHA-256).
CREATE TABLE key_hash_salt (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    salt TEXT NOT NULL
);
ALTER TABLE api_keys RENAME COLUMN secret_sha256 TO secret_hash;
ALTER TABLE api_keys ADD COLUMN hash_scheme INTEGER NOT NULL DEFAULT 1;
