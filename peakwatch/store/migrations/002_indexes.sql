-- Indexes for the range scans peakwatch runs (identical on plain PostgreSQL and TimescaleDB; the
-- timescale step creates hypertables without default time indexes because these cover them).

-- Time range scans over all meters use the readings primary key (ts first).
-- Restoring open windows after a restart: window_start >= since, across all meters.
CREATE INDEX IF NOT EXISTS meter_intervals_window_start ON meter_intervals (window_start);
-- Newest first, unfiltered.
CREATE INDEX IF NOT EXISTS dead_letters_received_at ON dead_letters (received_at DESC);
CREATE INDEX IF NOT EXISTS alerts_updated_at ON alerts (updated_at DESC);
