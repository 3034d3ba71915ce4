-- Deployments: a name served at /deployments/{name}/invocations, and the
-- model version behind it. `model_ref` is what the user deployed
-- (`3`, `@champion`, `Production`); `version` is what it resolved to then.
CREATE TABLE deployments (
    name TEXT PRIMARY KEY,
    model_name TEXT NOT NULL,
    model_ref TEXT NOT NULL,
    version BIGINT NOT NULL,
    instances BIGINT NOT NULL,
    -- Per-request deadline and row cap; NULL: the server's defaults.
    timeout_ms BIGINT,
    max_rows BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
