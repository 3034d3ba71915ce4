-- Kiln's first schema. One text runs on SQLite and PostgreSQL: ids are
-- text, times are milliseconds since the epoch (BIGINT), JSON is TEXT.
-- Tracking tables follow MLflow's model so its REST API maps onto them.

CREATE TABLE experiments (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    artifact_location TEXT NOT NULL DEFAULT '',
    lifecycle_stage TEXT NOT NULL DEFAULT 'active',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE experiment_tags (
    experiment_id TEXT NOT NULL REFERENCES experiments(id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (experiment_id, key)
);

CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    experiment_id TEXT NOT NULL REFERENCES experiments(id),
    parent_run_id TEXT REFERENCES runs(id),
    name TEXT NOT NULL,
    -- MLflow's statuses: RUNNING, SCHEDULED, FINISHED, FAILED, KILLED
    status TEXT NOT NULL,
    start_time BIGINT NOT NULL,
    end_time BIGINT,
    lifecycle_stage TEXT NOT NULL DEFAULT 'active',
    source TEXT NOT NULL DEFAULT '',
    user_id TEXT NOT NULL DEFAULT '',
    error TEXT
);
CREATE INDEX runs_by_experiment ON runs (experiment_id, start_time);
CREATE INDEX runs_by_parent ON runs (parent_run_id);

CREATE TABLE params (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (run_id, key)
);

CREATE TABLE tags (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (run_id, key)
);

-- Full history; NaN is stored as is_nan = 1 because SQLite turns NaN into NULL.
CREATE TABLE metrics (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    step BIGINT NOT NULL,
    timestamp BIGINT NOT NULL,
    value DOUBLE PRECISION,
    is_nan BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX metrics_by_run_key ON metrics (run_id, key, step);

-- The latest value per key (highest step, then newest), kept in the same
-- transaction as the history so search and listings need no aggregate.
CREATE TABLE latest_metrics (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    step BIGINT NOT NULL,
    timestamp BIGINT NOT NULL,
    value DOUBLE PRECISION,
    is_nan BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, key)
);

CREATE TABLE artifacts (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    path TEXT NOT NULL,
    blob TEXT NOT NULL,
    size BIGINT NOT NULL,
    media_type TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    PRIMARY KEY (run_id, path)
);

CREATE TABLE run_logs (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    seq BIGINT NOT NULL,
    stage TEXT NOT NULL DEFAULT '',
    level TEXT NOT NULL,
    message TEXT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (run_id, seq)
);

CREATE TABLE plugins (
    digest TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    kind TEXT NOT NULL,
    wit_version TEXT NOT NULL,
    summary TEXT NOT NULL,
    params_schema TEXT NOT NULL,
    imports TEXT NOT NULL,
    blob TEXT NOT NULL,
    size BIGINT NOT NULL,
    bundled BIGINT NOT NULL DEFAULT 0,
    timeout_ms BIGINT,
    memory_bytes BIGINT,
    created_at BIGINT NOT NULL,
    UNIQUE (name, version)
);

CREATE TABLE pipelines (
    name TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    base_dir TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE stage_runs (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    stage TEXT NOT NULL,
    status TEXT NOT NULL,
    plugin_digest TEXT,
    cache_key TEXT,
    started_at BIGINT,
    ended_at BIGINT,
    peak_memory BIGINT,
    attempts BIGINT NOT NULL DEFAULT 0,
    error TEXT,
    outputs TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (run_id, stage)
);
CREATE INDEX stage_runs_by_plugin ON stage_runs (plugin_digest);

CREATE TABLE stage_cache (
    cache_key TEXT PRIMARY KEY,
    outputs TEXT NOT NULL,
    run_id TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- Work for `kiln worker`s: claimed with a lease, renewed by heartbeats.
CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL,
    run_id TEXT,
    lease_owner TEXT,
    lease_expires_at BIGINT,
    attempts BIGINT NOT NULL DEFAULT 0,
    error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX jobs_by_status ON jobs (status, created_at);

CREATE TABLE registered_models (
    name TEXT PRIMARY KEY,
    description TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE model_versions (
    name TEXT NOT NULL REFERENCES registered_models(name) ON DELETE CASCADE,
    version BIGINT NOT NULL,
    run_id TEXT REFERENCES runs(id),
    blob TEXT NOT NULL,
    plugin_digest TEXT NOT NULL,
    stage TEXT NOT NULL DEFAULT 'None',
    description TEXT NOT NULL DEFAULT '',
    signature TEXT NOT NULL DEFAULT '{}',
    created_at BIGINT NOT NULL,
    PRIMARY KEY (name, version)
);

CREATE TABLE model_aliases (
    name TEXT NOT NULL REFERENCES registered_models(name) ON DELETE CASCADE,
    alias TEXT NOT NULL,
    version BIGINT NOT NULL,
    PRIMARY KEY (name, alias)
);

-- dataset version -> run -> model version -> deployment
CREATE TABLE lineage_edges (
    src_kind TEXT NOT NULL,
    src_id TEXT NOT NULL,
    dst_kind TEXT NOT NULL,
    dst_id TEXT NOT NULL,
    run_id TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (src_kind, src_id, dst_kind, dst_id)
);
