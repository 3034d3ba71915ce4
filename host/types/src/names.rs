//! Rules for names that more than one layer enforces.

/// The longest experiment name (MLflow's schema holds 256 characters).
pub const MAX_EXPERIMENT_NAME: usize = 256;

/// An experiment name: not blank, no control characters (NUL, line
/// breaks), at most [`MAX_EXPERIMENT_NAME`] characters.
pub fn check_experiment_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("an experiment name must not be empty".into());
    }
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        return Err(format!("an experiment name may not contain control characters such as {c:?}"));
    }
    let n = name.chars().count();
    if n > MAX_EXPERIMENT_NAME {
        return Err(format!("an experiment name is at most {MAX_EXPERIMENT_NAME} characters; this one has {n}"));
    }
    Ok(())
}
