-- Free-form site labels from the registry (e.g. {"class": "new-large"}): alert rules are scoped by them
-- (the Hunan plan's PUE 1.3 line applies to new large data centres) and the API shows them.
ALTER TABLE sites ADD COLUMN IF NOT EXISTS labels jsonb NOT NULL DEFAULT '{}';
