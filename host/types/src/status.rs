//! The statuses runs, jobs and pipeline stages go through, as enums: each
//! has one spelling (what the database, the CLI and the APIs show), and a
//! word nobody defined cannot be stored.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! words {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $word:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $word)] $variant),+
        }

        impl $name {
            /// Every value, in order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The one spelling.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $word),+
                }
            }

            /// The value spelled `s` exactly.
            pub fn parse(s: &str) -> Option<Self> {
                match s {
                    $($word => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

words! {
    /// A tracked run's status, as MLflow spells them.
    RunStatus {
        /// Being logged to, or its pipeline is running.
        Running = "RUNNING",
        /// Created but not started.
        Scheduled = "SCHEDULED",
        /// Ended well.
        Finished = "FINISHED",
        /// Ended badly.
        Failed = "FAILED",
        /// Stopped from outside (cancelled, interrupted).
        Killed = "KILLED",
    }
}

words! {
    /// A queued job's status; also a pipeline run's status as REST clients
    /// see it (see [`JobStatus::of_run`]).
    JobStatus {
        /// Waiting for a worker.
        Queued = "queued",
        /// Leased to a worker.
        Running = "running",
        /// Ran, and every stage and gate held.
        Succeeded = "succeeded",
        /// Ran, and something failed.
        Failed = "failed",
        /// Cancelled before or while running.
        Cancelled = "cancelled",
    }
}

impl JobStatus {
    /// Whether nothing more will happen to it.
    pub fn is_final(self) -> bool {
        matches!(self, JobStatus::Succeeded | JobStatus::Failed | JobStatus::Cancelled)
    }

    /// A pipeline run's status in these words, for a run no job tracks.
    pub fn of_run(status: RunStatus) -> Self {
        match status {
            RunStatus::Scheduled => JobStatus::Queued,
            RunStatus::Running => JobStatus::Running,
            RunStatus::Finished => JobStatus::Succeeded,
            RunStatus::Failed => JobStatus::Failed,
            RunStatus::Killed => JobStatus::Cancelled,
        }
    }
}

words! {
    /// How a pipeline stage ended, as recorded.
    StageState {
        /// The plugin ran and succeeded.
        Ran = "ran",
        /// Outputs were reused from an identical earlier run.
        Cached = "cached",
        /// Not run because something upstream failed.
        Skipped = "skipped",
        /// A gate whose check held.
        Passed = "passed",
        /// A gate whose check did not hold.
        GateFailed = "gate failed",
        /// The plugin (or recording it) failed.
        Failed = "failed",
    }
}

impl StageState {
    /// Whether stages downstream may run.
    pub fn ok(self) -> bool {
        matches!(self, StageState::Ran | StageState::Cached | StageState::Passed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_word_round_trips_and_unknown_words_are_refused() {
        for s in RunStatus::ALL {
            assert_eq!(RunStatus::parse(s.as_str()), Some(*s));
            assert_eq!(serde_json::to_string(s).unwrap(), format!("\"{s}\""));
        }
        for s in JobStatus::ALL {
            assert_eq!(JobStatus::parse(s.as_str()), Some(*s));
        }
        for s in StageState::ALL {
            assert_eq!(serde_json::from_str::<StageState>(&format!("\"{s}\"")).unwrap(), *s);
        }
        assert_eq!(StageState::parse("gate failed"), Some(StageState::GateFailed));
        assert_eq!(RunStatus::parse("running"), None, "one spelling");
        assert_eq!(JobStatus::of_run(RunStatus::Killed), JobStatus::Cancelled);
    }
}
