-- peakwatch base schema (plain PostgreSQL >= 14). TimescaleDB extras are applied by
-- peakwatch/store/timescale.py when the extension is available.

CREATE TABLE IF NOT EXISTS sites (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('data_centre', 'park')),
    timezone    text NOT NULL,
    grid_factor text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    -- A site removed from the registry is retired, never deleted: its history stays readable.
    retired_at  timestamptz
);

CREATE TABLE IF NOT EXISTS meters (
    site_id      text NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    id           text NOT NULL,
    carrier      text NOT NULL,
    role         text NOT NULL,
    register     text NOT NULL,
    unit         text NOT NULL,
    register_max double precision,
    -- The compact key raw readings are stored under (stable: meters are retired, never deleted).
    key          integer GENERATED ALWAYS AS IDENTITY UNIQUE,
    retired_at   timestamptz,
    PRIMARY KEY (site_id, id)
);

-- Raw readings, canonical units, idempotent on (meter, ts). The highest-volume table, so it is keyed
-- as compactly as possible: ts first (readings arrive roughly in time order, so inserts append to the
-- right edge of the index) and the meter's integer key instead of two text ids (the unique key was
-- about half of PostgreSQL's CPU per stored reading; docs/operations.md). `readings_named` shows the
-- ids.
CREATE TABLE IF NOT EXISTS readings (
    ts          timestamptz NOT NULL,
    meter_key   integer NOT NULL,
    energy_kwh  double precision,
    power_kw    double precision,
    volume_m3   double precision,
    heat_gj     double precision,
    mass_t      double precision,
    count       double precision,
    PRIMARY KEY (ts, meter_key)
);

CREATE OR REPLACE VIEW readings_named AS
    SELECT m.site_id, m.id AS meter_id, r.ts, r.energy_kwh, r.power_kw, r.volume_m3, r.heat_gj, r.mass_t,
           r.count
    FROM readings r JOIN meters m ON m.key = r.meter_key;

-- Baseline of each meter's register and when it was last heard from.
CREATE TABLE IF NOT EXISTS meter_state (
    site_id    text NOT NULL,
    meter_id   text NOT NULL,
    last_ts    timestamptz NOT NULL,
    last_value double precision,
    last_seen  timestamptz NOT NULL,
    PRIMARY KEY (site_id, meter_id)
);

-- Per-meter amount within each window (canonical unit of the meter's register). Additive.
CREATE TABLE IF NOT EXISTS meter_intervals (
    site_id      text NOT NULL,
    meter_id     text NOT NULL,
    window_start timestamptz NOT NULL,
    amount       double precision NOT NULL,
    PRIMARY KEY (site_id, meter_id, window_start)
);

CREATE TABLE IF NOT EXISTS meter_events (
    id       bigserial PRIMARY KEY,
    site_id  text NOT NULL,
    meter_id text NOT NULL,
    ts       timestamptz NOT NULL,
    kind     text NOT NULL,
    detail   text NOT NULL,
    previous double precision,
    value    double precision
);
CREATE INDEX IF NOT EXISTS meter_events_site_ts ON meter_events (site_id, ts DESC);

CREATE TABLE IF NOT EXISTS kpi_windows (
    site_id                     text NOT NULL,
    window_start                timestamptz NOT NULL,
    window_end                  timestamptz NOT NULL,
    electricity_kwh             double precision NOT NULL,
    facility_kwh                double precision,
    it_kwh                      double precision,
    renewable_generation_kwh    double precision NOT NULL,
    renewable_consumed_kwh      double precision NOT NULL,
    grid_import_kwh             double precision NOT NULL,
    grid_export_kwh             double precision NOT NULL,
    electricity_kgce            double precision NOT NULL,
    total_kgce                  double precision NOT NULL,
    emissions_kg                double precision NOT NULL,
    electricity_emissions_kg    double precision NOT NULL,
    pue                         double precision,
    electrification_rate        double precision,
    carbon_intensity_kg_per_kwh double precision,
    green_power_share           double precision,
    completeness                double precision NOT NULL,
    flags                       text[] NOT NULL DEFAULT '{}',
    interim                     boolean NOT NULL DEFAULT true,
    computed_at                 timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site_id, window_start, window_end)
);

CREATE TABLE IF NOT EXISTS dead_letters (
    id          bigserial PRIMARY KEY,
    received_at timestamptz NOT NULL,
    source      text NOT NULL,
    reason      text NOT NULL,
    detail      text NOT NULL,
    payload     bytea NOT NULL,
    site_id     text,
    meter_id    text
);
CREATE INDEX IF NOT EXISTS dead_letters_reason ON dead_letters (reason, received_at DESC);

CREATE TABLE IF NOT EXISTS alerts (
    id          bigserial PRIMARY KEY,
    fingerprint text NOT NULL,
    rule        text NOT NULL,
    site_id     text NOT NULL,
    state       text NOT NULL CHECK (state IN ('pending', 'firing', 'resolved', 'inactive')),
    severity    text NOT NULL,
    summary     text NOT NULL,
    value       double precision,
    started_at  timestamptz NOT NULL,
    fired_at    timestamptz,
    resolved_at timestamptz,
    updated_at  timestamptz NOT NULL
);
-- At most one open (pending or firing) alert per fingerprint.
CREATE UNIQUE INDEX IF NOT EXISTS alerts_open_fingerprint ON alerts (fingerprint)
    WHERE state IN ('pending', 'firing');
CREATE INDEX IF NOT EXISTS alerts_site_state ON alerts (site_id, state, updated_at DESC);
