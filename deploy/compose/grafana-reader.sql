-- The role Grafana logs in with (deploy/grafana/provisioning/datasources/peakwatch.yaml): it may read the
-- three tables the dashboards query and nothing else, so a Grafana compromise does not expose users,
-- tokens or device password hashes. Idempotent: compose runs it after every `db migrate`, Kubernetes
-- in the grafana-reader Job (shared by both: deploy/kustomization.yaml reads this file).
--
--   psql -v ON_ERROR_STOP=1 -v grafana_password=… -f grafana-reader.sql
SELECT 'CREATE ROLE grafana_reader LOGIN'
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'grafana_reader')\gexec
ALTER ROLE grafana_reader WITH LOGIN PASSWORD :'grafana_password';
GRANT USAGE ON SCHEMA public TO grafana_reader;
GRANT SELECT ON sites, kpi_windows, alerts TO grafana_reader;
