//! How much Kiln reads of what it is handed: `[limits]` in `kiln.toml`
//! and the checked file reads behind it live in `kiln-data`
//! ([`kiln_data::files`]); the expression limits in `kiln-types`.

pub use kiln_data::files::*;
pub use kiln_types::expr::{MAX_EXPR_DEPTH, MAX_EXPR_TERMS, MAX_EXPR_VALUES};
