//! Rust bindings generated from the plugin contract, `wit/plugin.wit`.

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "plugin",
    exports: { default: async },
});

pub use plugwatch::plugin::host::Level as WitLevel;
