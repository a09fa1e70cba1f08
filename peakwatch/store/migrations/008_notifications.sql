-- Notifications (issue #4): alert labels for routing, silences, the notifier's per-group memory of what
-- it sent, the delivery log, and alert rules managed through the API.

-- What routes, silences and inhibition match on (alertname, site, severity, kpi or meter, site and rule
-- labels); written by the processor with every alert change.
ALTER TABLE alerts ADD COLUMN IF NOT EXISTS labels jsonb NOT NULL DEFAULT '{}';
UPDATE alerts SET labels = jsonb_build_object('alertname', rule, 'site', site_id, 'severity', severity)
WHERE labels = '{}';
-- The notifier reads the firing alerts on every wake-up.
CREATE INDEX IF NOT EXISTS alerts_firing ON alerts (id) WHERE state = 'firing';

CREATE TABLE IF NOT EXISTS silences (
    id          bigserial PRIMARY KEY,
    matchers    jsonb NOT NULL,            -- ["site=\"dc-1\"", "alertname=~\"pue_.*\""]
    starts_at   timestamptz NOT NULL,
    ends_at     timestamptz NOT NULL,
    created_by  text NOT NULL,
    comment     text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL,
    expired_by  text,                      -- who ended it early (ends_at then moved to that moment)
    CHECK (ends_at >= starts_at)           -- equal: expired before it started (it never muted)
);
CREATE INDEX IF NOT EXISTS silences_ends_at ON silences (ends_at DESC);

-- One row per (group, channel, escalation level): what the notifier last sent, so a restart neither
-- repeats a message nor forgets a group_wait, repeat or escalation timer.
CREATE TABLE IF NOT EXISTS notify_logs (
    id          text PRIMARY KEY,
    log         jsonb NOT NULL,
    updated_at  timestamptz NOT NULL
);

-- The delivery log: every attempt to deliver a message to a channel, sent or failed.
CREATE TABLE IF NOT EXISTS notifications (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL,
    receiver    text NOT NULL,
    channel     text NOT NULL,
    group_key   text NOT NULL,
    status      text NOT NULL CHECK (status IN ('firing', 'resolved')),
    outcome     text NOT NULL CHECK (outcome IN ('sent', 'failed')),
    detail      text NOT NULL,
    attempt     integer NOT NULL,
    escalation  integer NOT NULL,
    repeat      boolean NOT NULL,
    alert_ids   bigint[] NOT NULL,
    site_ids    text[] NOT NULL
);
CREATE INDEX IF NOT EXISTS notifications_at ON notifications (at DESC);
CREATE INDEX IF NOT EXISTS notifications_alerts ON notifications USING gin (alert_ids);

-- Alert rules made through the API (the registry file's rules are not stored: the file stays their
-- source). Same fields as a registry rule, as its document (peakwatch.config.rule_document).
CREATE TABLE IF NOT EXISTS alert_rules (
    name        text PRIMARY KEY,
    spec        jsonb NOT NULL,
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_by  text NOT NULL,
    updated_at  timestamptz NOT NULL
);
