-- A site that never stated its PUE measurement category has none (NULL: "not stated"); the registry
-- sync at start writes NULL over the old default for such sites.
ALTER TABLE sites ALTER COLUMN pue_category DROP NOT NULL;
ALTER TABLE sites ALTER COLUMN pue_category DROP DEFAULT;
