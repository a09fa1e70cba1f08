-- Why an alert closed when it is not simply recovery (``restated``: the recomputed windows no longer
-- breach its rule); the notifier tells the receivers.
ALTER TABLE alerts ADD COLUMN IF NOT EXISTS resolved_reason text;
