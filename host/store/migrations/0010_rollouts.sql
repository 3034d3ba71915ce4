-- Rollouts: a canary taking a share of a deployment's traffic, a shadow
-- that sees every request and never answers, and the policy that promotes
-- or rolls back the canary by itself. `rollout` counts the rollouts a
-- deployment has had, so a decision about one never lands on the next.
ALTER TABLE deployments ADD COLUMN canary_model TEXT;
ALTER TABLE deployments ADD COLUMN canary_version BIGINT;
ALTER TABLE deployments ADD COLUMN canary_percent DOUBLE PRECISION;
ALTER TABLE deployments ADD COLUMN shadow_model TEXT;
ALTER TABLE deployments ADD COLUMN shadow_version BIGINT;
-- The promotion policy as JSON; '' when no canary runs.
ALTER TABLE deployments ADD COLUMN policy TEXT NOT NULL DEFAULT '';
ALTER TABLE deployments ADD COLUMN rollout BIGINT NOT NULL DEFAULT 0;
ALTER TABLE deployments ADD COLUMN rollout_started_at BIGINT;

-- Every change to a deployment, with its reason, kept after the
-- deployment is deleted. Written in the transaction that changes the
-- deployment's row, whose lock orders the sequence numbers.
CREATE TABLE deployment_events (
    deployment TEXT NOT NULL,
    seq BIGINT NOT NULL,
    at BIGINT NOT NULL,
    action TEXT NOT NULL,
    model_name TEXT NOT NULL,
    version BIGINT NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (deployment, seq)
);

-- What each serving process saw of each role (stable, canary, shadow) of
-- a rollout: counters since the rollout began, replaced on every flush,
-- summed across processes when the policy judges.
CREATE TABLE rollout_stats (
    deployment TEXT NOT NULL,
    rollout BIGINT NOT NULL,
    role TEXT NOT NULL,
    process TEXT NOT NULL,
    version BIGINT NOT NULL,
    requests BIGINT NOT NULL,
    errors BIGINT NOT NULL,
    -- Shadow only: answers equal to the ones returned.
    agreed BIGINT NOT NULL,
    -- Latency histogram: `bucket:count` pairs (kiln-services' serving/stats.rs).
    latency TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (deployment, rollout, role, process)
);
