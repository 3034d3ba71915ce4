//! Host bindings for every released WIT version, one module per version
//! (a released version is never edited, so neither is its module).

/// `kiln:plugin@0.1.0`.
pub mod v0_1_0 {
    pub mod trainer {
        wasmtime::component::bindgen!({
            path: "../../wit/v0.1.0",
            world: "trainer-plugin",
            exports: { default: async },
        });
    }
    pub mod evaluator {
        wasmtime::component::bindgen!({
            path: "../../wit/v0.1.0",
            world: "evaluator-plugin",
            exports: { default: async },
            with: {
                "kiln:plugin/types": super::trainer::kiln::plugin::types,
                "kiln:plugin/host": super::trainer::kiln::plugin::host,
            },
        });
    }
    pub mod drift_detector {
        wasmtime::component::bindgen!({
            path: "../../wit/v0.1.0",
            world: "drift-detector-plugin",
            exports: { default: async },
            with: {
                "kiln:plugin/types": super::trainer::kiln::plugin::types,
                "kiln:plugin/host": super::trainer::kiln::plugin::host,
            },
        });
    }
    pub mod deployer {
        wasmtime::component::bindgen!({
            path: "../../wit/v0.1.0",
            world: "deployer-plugin",
            exports: { default: async },
            with: {
                "kiln:plugin/types": super::trainer::kiln::plugin::types,
                "kiln:plugin/host": super::trainer::kiln::plugin::host,
            },
        });
    }
    pub use trainer::kiln::plugin::{host, types};
}
