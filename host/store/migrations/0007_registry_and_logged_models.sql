-- MLflow's registry as its clients use it, and MLflow 3's logged models.
--
-- A model version may name a run this server does not hold (a registry
-- shared by several tracking servers, `MLFLOW_REGISTRY_URI`): its id is
-- kept in `external_run_id`, since `run_id` references `runs`. A version
-- made from a logged model points at it by `model_id`.
ALTER TABLE model_versions ADD COLUMN external_run_id TEXT NOT NULL DEFAULT '';
ALTER TABLE model_versions ADD COLUMN model_id TEXT NOT NULL DEFAULT '';

-- MLflow 3's LoggedModel: a model with its own id (`m-<32 hex>`), its
-- own artifacts, params, tags and metrics, made by `log_model` in a run
-- (or outside one) and finalised once its files are uploaded.
CREATE TABLE logged_models (
    id TEXT PRIMARY KEY,
    experiment_id TEXT NOT NULL REFERENCES experiments(id),
    name TEXT NOT NULL,
    source_run_id TEXT NOT NULL DEFAULT '',
    -- PENDING, READY or FAILED (MLflow's LOGGED_MODEL_… statuses)
    status TEXT NOT NULL,
    status_message TEXT NOT NULL DEFAULT '',
    model_type TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    deleted BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX logged_models_by_experiment ON logged_models (experiment_id, created_at);
CREATE INDEX logged_models_by_run ON logged_models (source_run_id);

CREATE TABLE logged_model_params (
    model_id TEXT NOT NULL REFERENCES logged_models(id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (model_id, key)
);

CREATE TABLE logged_model_tags (
    model_id TEXT NOT NULL REFERENCES logged_models(id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (model_id, key)
);

-- Metrics logged with a `model_id` (they also stay in the run's history).
CREATE TABLE logged_model_metrics (
    model_id TEXT NOT NULL REFERENCES logged_models(id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    value DOUBLE PRECISION,
    is_nan BIGINT NOT NULL DEFAULT 0,
    step BIGINT NOT NULL,
    timestamp BIGINT NOT NULL,
    run_id TEXT NOT NULL DEFAULT '',
    dataset_name TEXT NOT NULL DEFAULT '',
    dataset_digest TEXT NOT NULL DEFAULT ''
);
CREATE INDEX logged_model_metrics_by_model ON logged_model_metrics (model_id, key);

CREATE TABLE logged_model_artifacts (
    model_id TEXT NOT NULL REFERENCES logged_models(id) ON DELETE CASCADE,
    path TEXT NOT NULL,
    blob TEXT NOT NULL,
    size BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (model_id, path)
);

-- `runs/outputs`: the models a run produced, at which step.
CREATE TABLE run_model_outputs (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    model_id TEXT NOT NULL,
    step BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, model_id)
);

-- `runs/log-inputs`: the datasets a run read (MLflow's dataset inputs,
-- named by name and digest, with their context tags) and the logged
-- models it read (`model_inputs`).
CREATE TABLE run_dataset_inputs (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    digest TEXT NOT NULL,
    source_type TEXT NOT NULL DEFAULT '',
    source TEXT NOT NULL DEFAULT '',
    schema TEXT NOT NULL DEFAULT '',
    profile TEXT NOT NULL DEFAULT '',
    -- [{"key": …, "value": …}], as logged
    tags TEXT NOT NULL DEFAULT '[]',
    created_at BIGINT NOT NULL,
    PRIMARY KEY (run_id, name, digest)
);

CREATE TABLE run_model_inputs (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    model_id TEXT NOT NULL,
    PRIMARY KEY (run_id, model_id)
);
