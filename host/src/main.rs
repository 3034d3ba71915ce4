//! The `kiln` binary.

use std::io::Write;

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("KILN_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")))
        .with_writer(std::io::stderr)
        .init();
    // A bug in kiln must still end in a sentence, not a backtrace dump.
    // (Written, not eprintln!ed: a closed stderr must not panic again.)
    std::panic::set_hook(Box::new(|info| {
        let _ = writeln!(std::io::stderr(), "error: internal error in kiln ({info}); please report it with the command you ran");
    }));
    // Multi-threaded: a plugin spinning in Wasm must not starve other tasks.
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = runtime.block_on(async {
        match kiln::cli::main().await {
            Ok(code) => code,
            Err(e) => {
                let _ = writeln!(std::io::stderr(), "error: {e:#}");
                1
            }
        }
    });
    std::process::exit(code);
}
