//! The ceiling for plugwatch's invoke endpoint: an axum handler that does only what a fresh-instance call
//! costs in raw wasmtime, on the engine configuration `plugwatch serve` uses by default (pooling allocator,
//! epoch interruption, fuel): per request a new `Store` with the same limits set (fuel, epoch deadline,
//! a memory limiter), `instantiate_async` of the pre-linked component, `handle(hook, body)`, the output as
//! the response. No authentication, routing beyond one path, admission, measurement or JSON.
//! `cargo xtask bench-http` loads it and plugwatch side by side.
//!
//! Usage: `raw_wasmtime ADDR COMPONENT` (binary, or WebAssembly text).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Store, StoreLimits, StoreLimitsBuilder};

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "plugin",
    exports: { default: async },
});

/// What a store holds: only the memory limiter (the echo plugin never calls the host).
struct Host {
    limits: StoreLimits,
}

impl plugwatch::plugin::host::Host for Host {
    fn log(&mut self, _level: plugwatch::plugin::host::Level, _message: String) {}
    fn config(&mut self, _key: String) -> Option<String> {
        None
    }
}

struct Ceiling {
    engine: Engine,
    pre: PluginPre<Host>,
    limits: plugwatch_runtime::Limits,
}

async fn invoke(State(ceiling): State<Arc<Ceiling>>, body: Bytes) -> Result<Vec<u8>, StatusCode> {
    let limits = StoreLimitsBuilder::new().memory_size(ceiling.limits.memory_bytes as usize).build();
    let mut store = Store::new(&ceiling.engine, Host { limits });
    store.limiter(|host| &mut host.limits);
    store.set_fuel(ceiling.limits.fuel.unwrap_or(u64::MAX / 2)).map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    store.set_epoch_deadline(1 << 30);
    let plugin = ceiling.pre.instantiate_async(&mut store).await.map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    match plugin.call_handle(&mut store, "order.created", &body).await {
        Ok(Ok(output)) => Ok(output),
        Ok(Err(_)) => Err(StatusCode::UNPROCESSABLE_ENTITY),
        Err(_) => Err(StatusCode::INTERNAL_SERVER_ERROR),
    }
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(addr), Some(component)) = (args.next(), args.next()) else {
        eprintln!("usage: raw_wasmtime ADDR COMPONENT");
        std::process::exit(2);
    };
    let runtime = plugwatch_server::ServeConfig::default().runtime_config();
    let engine = Engine::new(&plugwatch_runtime::engine_config(&runtime)).expect("the engine configuration is valid");
    let bytes = wat::parse_file(&component).expect("read the component");
    let component = Component::new(&engine, bytes).expect("compile the component");
    let mut linker = Linker::<Host>::new(&engine);
    Plugin::add_to_linker::<Host, wasmtime::component::HasSelf<Host>>(&mut linker, |host| host).expect("link");
    let pre = PluginPre::new(linker.instantiate_pre(&component).expect("instantiate_pre")).expect("the plugin world");
    let ceiling = Arc::new(Ceiling { engine, pre, limits: plugwatch_runtime::Limits::default() });
    let app = Router::new().route("/invoke", post(invoke)).with_state(ceiling);
    let listener = tokio::net::TcpListener::bind(&addr).await.expect("bind");
    println!("listening on {addr}");
    axum::serve(listener, app).await.expect("serve");
}
