//! The `kiln` binary: the command line, given the REST API to serve.

fn main() {
    std::process::exit(kiln_cli::run(kiln_api::serve_boxed));
}

// Links the large dependencies from the shared library (see host/dylib).
#[cfg(feature = "dynamic-linking")]
use kiln_dylib as _;
