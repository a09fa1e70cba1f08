-- API and dashboard users, their API tokens and sessions, and the audit log (issue #7).
-- Passwords are argon2id hashes; tokens and sessions store a SHA-256 digest of their secret only.
CREATE TABLE IF NOT EXISTS users (
    name                 text PRIMARY KEY,
    role                 text NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    sites                text[],            -- NULL: every site
    password_hash        text NOT NULL,
    must_change_password boolean NOT NULL DEFAULT false,
    created_at           timestamptz NOT NULL DEFAULT now(),
    disabled_at          timestamptz
);

CREATE TABLE IF NOT EXISTS credentials (
    id            text PRIMARY KEY,
    kind          text NOT NULL CHECK (kind IN ('token', 'session')),
    name          text NOT NULL,
    user_name     text NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    role          text NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    sites         text[],
    secret_digest text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz,
    revoked_at    timestamptz,
    last_used_at  timestamptz
);
CREATE INDEX IF NOT EXISTS credentials_user ON credentials (user_name);

-- Every change made through the API or the CLI: who, through what, what, and the (redacted) input.
CREATE TABLE IF NOT EXISTS audit_log (
    id        bigserial PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now(),
    actor     text NOT NULL,        -- user name, or 'cli:<os user>'
    via       text NOT NULL,        -- token:<id>, session:<id>, cli
    action    text NOT NULL,        -- e.g. 'POST /api/v1/sites/{site_id}/targets'
    site_id   text,
    target    text NOT NULL DEFAULT '',
    detail    jsonb NOT NULL DEFAULT '{}',
    client    text NOT NULL DEFAULT '',
    outcome   text NOT NULL DEFAULT 'ok'  -- 'started' until the change ended; 'ok' or 'refused: …'
);
CREATE INDEX IF NOT EXISTS audit_log_at ON audit_log (at DESC);

-- Acknowledgement records who took an alert on, and when (operators and admins, through the API).
ALTER TABLE alerts ADD COLUMN IF NOT EXISTS acknowledged_at timestamptz;
ALTER TABLE alerts ADD COLUMN IF NOT EXISTS acknowledged_by text;
