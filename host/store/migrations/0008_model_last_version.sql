-- A deleted version's number is never given again (as MLflow's registry
-- does): each model counts the versions it has handed out.
ALTER TABLE registered_models ADD COLUMN last_version BIGINT NOT NULL DEFAULT 0;
UPDATE registered_models SET last_version = (SELECT COALESCE(MAX(v.version), 0) FROM model_versions v WHERE v.name = registered_models.name);
