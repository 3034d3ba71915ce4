-- Cron schedules for pipelines, and the ticks that fired. The primary key
-- of schedule_fires is what makes a tick fire once however many
-- `kiln serve` processes share the database: only one insert wins.

CREATE TABLE schedules (
    id TEXT PRIMARY KEY,
    pipeline TEXT NOT NULL REFERENCES pipelines(name) ON DELETE CASCADE,
    cron TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE schedule_fires (
    schedule_id TEXT NOT NULL REFERENCES schedules(id) ON DELETE CASCADE,
    tick BIGINT NOT NULL,
    run_id TEXT,
    fired_at BIGINT NOT NULL,
    PRIMARY KEY (schedule_id, tick)
);
