//! The `kiln` binary: the command line, given the REST API to serve.

fn main() {
    std::process::exit(kiln_cli::run(kiln_api::serve_boxed));
}
