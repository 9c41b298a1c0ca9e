//! Benchmarks of one request through the whole application in-process (the router, access layer, handler
//! and response, no socket), split into layers so each one's share of an invocation request is visible:
//! an unauthenticated probe, an authenticated read, the registry's invoke alone, and the JSON and raw
//! invoke endpoints.

use std::hint::black_box;

use axum::body::Body;
use axum::http::{Request, header};
use criterion::{Criterion, criterion_group, criterion_main};
use plugwatch_server::{ServeConfig, Server, app};
use tower::ServiceExt;

/// The allocator the `plugwatch` binary uses, so that these figures are the product's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const TEMPLATE: &str = include_str!("../../runtime/tests/fixtures/plugin.wat.in");
const PASSWORD: &str = "request bench password";
/// The same payload `cargo xtask bench-http` sends.
const PAYLOAD: &str = r#"{"hook":"order.created","input":{"order_id":"ord-1001","customer_id":"cust-42","items":[{"sku":"bulgogi-bowl","quantity":2,"unit_price":12500},{"sku":"kimchi","quantity":1,"unit_price":3000}],"promo_code":"WELCOME10"}}"#;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (router, registry, token) = rt.block_on(async {
        let config = ServeConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.path().to_owned(),
            admin_password: Some(plugwatch_server::config::Secret(PASSWORD.to_owned())),
            ..ServeConfig::default()
        };
        let server = Server::bind(config).await.unwrap();
        let state = server.state().clone();
        let (admin, _) = state.access.login("admin", PASSWORD, "127.0.0.1").await.unwrap();
        let spec = plugwatch_access::NewToken {
            name: "bench".into(),
            role: plugwatch_access::Role::Admin,
            expires_in: None,
            service: true,
        };
        let token = state.access.create_token(&admin, spec).await.unwrap().1;
        let manifest = plugwatch_registry::Manifest {
            name: "echo".into(),
            version: "1.0.0".into(),
            hooks: vec![plugwatch_store::Subscription { hook: "order.created".into(), priority: 0 }],
            ..Default::default()
        };
        let echo =
            TEMPLATE.replace("{extra}", "").replace("{body}", "(call $ok (local.get $input) (local.get $input_len))");
        state.registry.upload(manifest, wat::parse_str(echo).unwrap(), true).await.unwrap();
        (app(state.clone()), state.registry.clone(), token)
    });
    let bearer = format!("Bearer {token}");
    let peer = axum::extract::ConnectInfo(std::net::SocketAddr::from(([127, 0, 0, 1], 40000)));
    let send = |mut request: Request<Body>| {
        let router = router.clone();
        request.extensions_mut().insert(peer);
        async move {
            let response = router.oneshot(request).await.unwrap();
            assert!(response.status().is_success(), "{}", response.status());
            black_box(axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap());
        }
    };

    let mut group = c.benchmark_group("request");
    // The reference: the bare axum echo handler `cargo xtask bench-http` compares with.
    let bare = axum::Router::new().route("/echo", axum::routing::post(|body: axum::body::Bytes| async move { body }));
    group.bench_function("bare axum echo", |b| {
        b.to_async(&rt).iter(|| async {
            let response =
                bare.clone().oneshot(Request::post("/echo").body(Body::from(PAYLOAD)).unwrap()).await.unwrap();
            black_box(axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap());
        })
    });
    group.bench_function("healthz", |b| {
        b.to_async(&rt).iter(|| send(Request::get("/healthz").body(Body::empty()).unwrap()))
    });
    group.bench_function("authenticated GET /api/v1/hooks", |b| {
        b.to_async(&rt).iter(|| {
            send(Request::get("/api/v1/hooks").header(header::AUTHORIZATION, &bearer).body(Body::empty()).unwrap())
        })
    });
    let input = serde_json::to_vec(&serde_json::from_str::<serde_json::Value>(PAYLOAD).unwrap()["input"]).unwrap();
    group.bench_function("registry invoke (no HTTP)", |b| {
        b.to_async(&rt).iter(|| async { black_box(registry.invoke("echo", "order.created", &input).await.unwrap()) })
    });
    group.bench_function("POST /api/v1/plugins/echo/invoke", |b| {
        b.to_async(&rt).iter(|| {
            send(
                Request::post("/api/v1/plugins/echo/invoke")
                    .header(header::AUTHORIZATION, &bearer)
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(PAYLOAD))
                    .unwrap(),
            )
        })
    });
    group.bench_function("POST /api/v1/plugins/echo/invoke/order.created (raw)", |b| {
        b.to_async(&rt).iter(|| {
            send(
                Request::post("/api/v1/plugins/echo/invoke/order.created")
                    .header(header::AUTHORIZATION, &bearer)
                    .body(Body::from(input.clone()))
                    .unwrap(),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
