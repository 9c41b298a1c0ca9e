//! The HTTP ceiling: a bare axum handler that echoes the POSTed body, on the same tokio
//! and axum versions as the server. `cargo xtask bench-http` compares plugwatch's invoke endpoint with it.

use axum::Router;
use axum::body::Bytes;
use axum::routing::post;

#[tokio::main]
async fn main() {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:18500".into());
    let app = Router::new().route("/echo", post(|body: Bytes| async move { body }));
    let listener = tokio::net::TcpListener::bind(&addr).await.expect("bind");
    println!("listening on {addr}");
    axum::serve(listener, app).await.expect("serve");
}
