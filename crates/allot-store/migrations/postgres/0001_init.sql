-- Every configuration version: the whole core State as JSON. Rows are never updated.
CREATE TABLE config_versions (
    version BIGINT PRIMARY KEY,
    state TEXT NOT NULL,
    created_at TEXT NOT NULL
);

-- One entry per committed version.
CREATE TABLE audit_log (
    after_version BIGINT PRIMARY KEY REFERENCES config_versions(version),
    before_version BIGINT NOT NULL,
    actor TEXT NOT NULL,
    time TEXT NOT NULL,
    action TEXT NOT NULL,
    reason TEXT,
    forced BOOLEAN NOT NULL,
    changes TEXT NOT NULL,
    overridden TEXT NOT NULL
);

-- API keys: only the SHA-256 of the secret is kept.
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);

CREATE TABLE sticky_assignments (
    unit_type TEXT NOT NULL,
    unit TEXT NOT NULL,
    experiment TEXT NOT NULL,
    variant TEXT NOT NULL,
    PRIMARY KEY (unit_type, unit, experiment)
);

CREATE TABLE exposures (
    id BIGSERIAL PRIMARY KEY,
    unit TEXT NOT NULL,
    experiment TEXT NOT NULL,
    variant TEXT NOT NULL,
    day TEXT NOT NULL,
    time TEXT NOT NULL,
    version BIGINT NOT NULL,
    UNIQUE (unit, experiment, variant, day)
);
CREATE INDEX exposures_by_experiment ON exposures (experiment, id);
