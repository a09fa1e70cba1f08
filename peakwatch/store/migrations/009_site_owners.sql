-- Which processor owns each site, with an epoch that grows at every hand-over (Kafka bus: processors
-- share the sites through a consumer group). A processor's writes carry the epochs it claimed and lock
-- these rows (FOR SHARE) before writing: a processor that lost its sites while stalled (a zombie) can
-- no longer write, and a new owner's claim waits until the old owner's write in flight has committed,
-- so the state it restores includes it.
CREATE TABLE IF NOT EXISTS site_owners (
    site_id text PRIMARY KEY,
    epoch bigint NOT NULL,
    owner text NOT NULL,
    claimed_at timestamptz NOT NULL DEFAULT now()
);
