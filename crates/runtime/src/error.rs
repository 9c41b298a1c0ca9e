//! The runtime's typed errors: why a plugin could not be loaded, or why the runtime could not start.

use plugwatch_model::LimitsError;

/// Why a plugin was not loaded. Every message says what is wrong in terms a plugin author can act on.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("plugin is {size} bytes, over the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("not a WebAssembly binary: a plugin must start with the `\\0asm` magic bytes")]
    NotWasm,
    #[error(
        "this is a core WebAssembly module, not a component: build the plugin as a component of the \
         `plugwatch:plugin/plugin` world (e.g. `wasm-tools component new`, componentize-py, componentize-js)"
    )]
    CoreModule,
    #[error("invalid WebAssembly component: {0}")]
    Invalid(String),
    #[error("sha256 mismatch: the pinned hash is {expected} but the plugin's is {actual}")]
    HashMismatch { expected: String, actual: String },
    #[error(
        "import `{0}` is not allowed: a plugin may import only `plugwatch:plugin/host@0.1.x` and WASI 0.2 \
         interfaces (cli, clocks, filesystem, io, random, sockets, http)"
    )]
    ForbiddenImport(String),
    #[error(
        "the component does not export `handle`: a plugin must export `handle: func(hook: string, input: list<u8>) -> result<list<u8>, string>`"
    )]
    MissingExport,
    #[error("the component does not match the plugwatch:plugin world: {0}")]
    WorldMismatch(String),
    #[error("the plugin failed to instantiate: {0}")]
    Instantiation(String),
    #[error(transparent)]
    Limits(#[from] LimitsError),
}

/// Why the runtime itself could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot configure the WebAssembly engine: {0}")]
    Engine(String),
    #[error("cannot use the compilation cache directory {path}: {source}")]
    CacheDir { path: std::path::PathBuf, source: std::io::Error },
}
