-- Standards-grade accounting (issue #3): windows of every period with their additive components,
-- revisions, restatement requests, versioned factors and the monthly inputs of market-based and
-- intensity KPIs. kpi_windows is derived data (recomputable from meter_intervals), so the 1-minute
-- table of 001 is replaced rather than altered: `peakwatch db restate` rebuilds its history.

DROP TABLE IF EXISTS kpi_windows CASCADE;

ALTER TABLE meter_intervals ADD COLUMN IF NOT EXISTS estimated boolean NOT NULL DEFAULT false;
ALTER TABLE meters ADD COLUMN IF NOT EXISTS rated_kw double precision;
ALTER TABLE meters ADD COLUMN IF NOT EXISTS zone text;
ALTER TABLE sites ADD COLUMN IF NOT EXISTS factor_set text NOT NULL DEFAULT 'default';
ALTER TABLE sites ADD COLUMN IF NOT EXISTS pue_category text NOT NULL DEFAULT 'category 1';
ALTER TABLE sites ALTER COLUMN grid_factor DROP NOT NULL;

-- One row per site, period and window. Numeric KPI columns for SQL and Grafana; `components` holds
-- the additive energies every KPI was computed from (a longer window's components are the sums of
-- its minutes'), `factors_used` the factor versions (slot -> id@version).
CREATE TABLE kpi_windows (
    site_id                             text NOT NULL,
    period                              text NOT NULL CHECK (period IN ('1m', '15m', '1h', '1d', '1mo', '12mo')),
    window_start                        timestamptz NOT NULL,
    window_end                          timestamptz NOT NULL,
    electricity_kwh                     double precision NOT NULL,
    facility_kwh                        double precision,
    it_kwh                              double precision,
    renewable_generation_kwh            double precision NOT NULL,
    renewable_consumed_kwh              double precision NOT NULL,
    grid_import_kwh                     double precision NOT NULL,
    grid_export_kwh                     double precision NOT NULL,
    electricity_kgce                    double precision NOT NULL,
    total_kgce                          double precision NOT NULL,
    emissions_kg                        double precision NOT NULL,
    electricity_emissions_kg            double precision NOT NULL,
    pue                                 double precision,
    electrification_rate                double precision,
    carbon_intensity_kg_per_kwh         double precision,
    green_power_share                   double precision,
    completeness                        double precision NOT NULL,
    flags                               text[] NOT NULL DEFAULT '{}',
    interim                             boolean NOT NULL DEFAULT true,
    electricity_kgce_coal               double precision NOT NULL DEFAULT 0,
    electrification_rate_coal           double precision,
    emissions_market_kg                 double precision,
    electricity_emissions_market_kg     double precision,
    carbon_intensity_market_kg_per_kwh  double precision,
    green_certificates_kwh              double precision,
    green_power_share_market            double precision,
    cue                                 double precision,
    ref                                 double precision,
    wue_l_per_kwh                       double precision,
    erf                                 double precision,
    ppue                                jsonb NOT NULL DEFAULT '{}',
    max_demand_kw                       double precision,
    output                              double precision,
    energy_intensity_kgce_per_unit      double precision,
    value_added_10k_cny                 double precision,
    energy_intensity_kgce_per_10k_cny   double precision,
    gb40879_grade                       text,
    estimated                           boolean NOT NULL DEFAULT false,
    components                          jsonb NOT NULL DEFAULT '{}',
    factors_used                        jsonb NOT NULL DEFAULT '{}',
    revision                            integer NOT NULL DEFAULT 0,
    computed_at                         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site_id, period, window_start)
);
CREATE INDEX IF NOT EXISTS kpi_windows_site_period_end ON kpi_windows (site_id, period, window_end DESC);

-- The value a window had before each restatement, with the reason: the audit trail of a KPI.
CREATE TABLE IF NOT EXISTS kpi_revisions (
    site_id      text NOT NULL,
    period       text NOT NULL,
    window_start timestamptz NOT NULL,
    revision     integer NOT NULL,
    reason       text NOT NULL,
    detail       text NOT NULL,
    replaced_at  timestamptz NOT NULL DEFAULT now(),
    previous     jsonb NOT NULL,
    PRIMARY KEY (site_id, period, window_start, revision)
);

-- Work for the processor's accountant: recompute the windows of a site (NULL: every site) between
-- from_ts and to_ts, re-deriving one meter's intervals from its readings first when meter_id is set.
CREATE TABLE IF NOT EXISTS restatement_requests (
    id           bigserial PRIMARY KEY,
    site_id      text,
    meter_id     text,
    from_ts      timestamptz NOT NULL,
    to_ts        timestamptz NOT NULL,
    reason       text NOT NULL,
    detail       text NOT NULL DEFAULT '',
    requested_at timestamptz NOT NULL DEFAULT now(),
    done_at      timestamptz,
    CHECK (to_ts > from_ts)
);
CREATE INDEX IF NOT EXISTS restatement_requests_pending ON restatement_requests (id) WHERE done_at IS NULL;

-- Factor versions added through the API (the shipped defaults and YAML overrides live in code and
-- config; a version here is newer than both).
CREATE TABLE IF NOT EXISTS factor_versions (
    id          text NOT NULL,
    version     integer NOT NULL,
    value       double precision NOT NULL CHECK (value >= 0),
    unit        text NOT NULL,
    source      text NOT NULL,
    data_year   integer,
    published   text,
    status      text NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id, version)
);

CREATE TABLE IF NOT EXISTS meter_replacements (
    site_id     text NOT NULL,
    meter_id    text NOT NULL,
    ts          timestamptz NOT NULL,
    old_final   double precision NOT NULL,
    new_initial double precision NOT NULL,
    note        text NOT NULL DEFAULT '',
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site_id, meter_id, ts)
);

-- Green certificates (GEC, 1 certificate = 1,000 kWh) and green-power contracts per site and local
-- calendar month (market-based accounting).
CREATE TABLE IF NOT EXISTS green_instruments (
    id          bigserial PRIMARY KEY,
    site_id     text NOT NULL,
    month       date NOT NULL CHECK (extract(day FROM month) = 1),
    kind        text NOT NULL CHECK (kind IN ('certificate', 'contract')),
    kwh         double precision NOT NULL CHECK (kwh >= 0),
    reference   text NOT NULL DEFAULT '',
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS green_instruments_site_month ON green_instruments (site_id, month);

CREATE TABLE IF NOT EXISTS value_added (
    site_id     text NOT NULL,
    month       date NOT NULL CHECK (extract(day FROM month) = 1),
    value_cny   double precision NOT NULL CHECK (value_cny >= 0),
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site_id, month)
);

-- Carbon-peak targets per site: a KPI kept at most / at least a value in a year, or reduced by a
-- share against a baseline year.
CREATE TABLE IF NOT EXISTS targets (
    id            bigserial PRIMARY KEY,
    site_id       text NOT NULL,
    kpi           text NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('at_most', 'at_least', 'reduce_by')),
    value         double precision NOT NULL,
    year          integer NOT NULL,
    baseline_year integer,
    note          text NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind = 'reduce_by') = (baseline_year IS NOT NULL))
);
CREATE INDEX IF NOT EXISTS targets_site ON targets (site_id);
