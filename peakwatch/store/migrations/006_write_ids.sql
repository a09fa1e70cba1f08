-- Each processor step's transaction records its id, so a step retried after an ambiguous failure (the
-- COMMIT reached the server but its reply was lost) is recognised and not applied twice: interval
-- amounts are added, so applying a step twice would count its energy twice. Ids older than a day are
-- removed by the writes themselves.
CREATE TABLE IF NOT EXISTS processor_writes (
    id text PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now()
);
