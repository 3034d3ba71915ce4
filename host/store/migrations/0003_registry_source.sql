-- Model versions registered through MLflow's API point at an artifact URI
-- rather than a Kiln model blob; versions carry tags; models carry tags.
ALTER TABLE model_versions ADD COLUMN source TEXT NOT NULL DEFAULT '';
ALTER TABLE model_versions ADD COLUMN updated_at BIGINT NOT NULL DEFAULT 0;

CREATE TABLE registered_model_tags (
    name TEXT NOT NULL REFERENCES registered_models(name) ON DELETE CASCADE,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (name, key)
);

CREATE TABLE model_version_tags (
    name TEXT NOT NULL,
    version BIGINT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (name, version, key)
);
