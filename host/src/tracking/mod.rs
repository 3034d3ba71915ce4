//! Experiment tracking services: the search language and run comparison.

pub mod compare;
pub mod filter;
