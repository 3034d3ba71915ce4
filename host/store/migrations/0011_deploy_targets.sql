-- Where a deployer plugin put a deployment: the plugin, its params, the
-- capabilities the operator granted for this deployment (JSON, the
-- services' to read), and what the plugin last answered.
CREATE TABLE deployment_targets (
    deployment TEXT PRIMARY KEY,
    plugin_name TEXT NOT NULL,
    plugin_digest TEXT NOT NULL,
    params TEXT NOT NULL,
    grants TEXT NOT NULL,
    model_name TEXT NOT NULL,
    version BIGINT NOT NULL,
    status TEXT NOT NULL,
    endpoint TEXT,
    manifest TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Capabilities granted to a plugin (by name, every version) for every
-- deployment it deploys.
CREATE TABLE plugin_grants (
    plugin_name TEXT PRIMARY KEY,
    grants TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
