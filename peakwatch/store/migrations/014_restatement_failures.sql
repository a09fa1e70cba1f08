-- A restatement request whose work raised (one site's bad data, a bug) is not lost and does not stop
-- the queue: the accountant records the error, retries the request with backoff and works the others.
-- ``error`` is the last failure (kept after a later success, as history), ``attempts`` the failures so far.
ALTER TABLE restatement_requests ADD COLUMN IF NOT EXISTS attempts integer NOT NULL DEFAULT 0;
ALTER TABLE restatement_requests ADD COLUMN IF NOT EXISTS error text;
ALTER TABLE restatement_requests ADD COLUMN IF NOT EXISTS failed_at timestamptz;
