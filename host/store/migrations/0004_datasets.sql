-- Versioned datasets: a name, versions numbered 1, 2, 3... Each version is
-- a content hash (a file's BLAKE3, or a directory manifest's), its schema and
-- column profile when it is tabular (JSON as TEXT), and where it was added
-- from. The same content added again under a name is the same version.
CREATE TABLE datasets (
    name TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL
);

CREATE TABLE dataset_versions (
    name TEXT NOT NULL REFERENCES datasets(name) ON DELETE CASCADE,
    version BIGINT NOT NULL,
    hash TEXT NOT NULL,
    -- 'file' or 'dir'
    kind TEXT NOT NULL,
    size BIGINT NOT NULL,
    files BIGINT NOT NULL,
    path TEXT NOT NULL,
    format TEXT NOT NULL DEFAULT '',
    schema_json TEXT,
    profile_json TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (name, version),
    UNIQUE (name, hash)
);

-- Lineage: which runs read which dataset version.
CREATE TABLE dataset_usage (
    name TEXT NOT NULL,
    version BIGINT NOT NULL,
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    input TEXT NOT NULL,
    PRIMARY KEY (name, version, run_id, input)
);
