-- Exact restatement reasons: each revision lists every request that caused it (several inputs queued
-- back to back can change the same window in one recomputation), and each request counts the window
-- revisions it caused, so a request whose change another one's pass applied still shows its outcome.
ALTER TABLE kpi_revisions ADD COLUMN IF NOT EXISTS causes jsonb NOT NULL DEFAULT '[]';
ALTER TABLE restatement_requests ADD COLUMN IF NOT EXISTS restated integer NOT NULL DEFAULT 0;
-- A factor revision names its factor: only windows whose factors_used changed for that factor cite it.
ALTER TABLE restatement_requests ADD COLUMN IF NOT EXISTS factor_id text;

-- The factor versions the processor last ran with (code defaults, registry YAML, API): a YAML override
-- changed between two starts queues a factor revision like one made through the API.
CREATE TABLE IF NOT EXISTS factor_sync (
    id  text PRIMARY KEY,
    ref text NOT NULL,
    value double precision NOT NULL,
    unit text NOT NULL
);
