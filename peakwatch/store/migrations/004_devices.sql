-- Device and collector credentials for the MQTT broker (issue #7). Only hashes are stored, in the
-- broker's own format; a revoked credential stays listed with the time it was revoked.
CREATE TABLE IF NOT EXISTS devices (
    id            text PRIMARY KEY,
    kind          text NOT NULL CHECK (kind IN ('device', 'collector')),
    site_id       text REFERENCES sites (id),
    meters        text[] NOT NULL DEFAULT '{}',
    password_hash text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    rotated_at    timestamptz,
    revoked_at    timestamptz,
    CHECK ((kind = 'device') = (site_id IS NOT NULL))
);
