//! `serve --demo`: installs the example plugins (embedded in the binary) and, once every plugin is loaded,
//! drives synthetic restaurant traffic through the hooks until shutdown, so a newcomer sees live numbers.
//!
//! The mix: about 20 orders a second through the `order.pricing` filter chain (promo-discount in Python,
//! loyalty-points in JavaScript, delivery-quote in WAT, which is deliberately slow and flaky), one in
//! twenty with bad input, and an `order.completed` action for every third order.

use std::time::Duration;

use plugwatch_registry::{HookMode, Manifest, Registry};
use plugwatch_runtime::Limits;
use plugwatch_store::{FailurePolicy, Subscription};
use tokio::sync::watch;

const PROMO: &[u8] = include_bytes!("../../../examples/plugins/promo-discount/promo-discount.wasm");
const LOYALTY: &[u8] = include_bytes!("../../../examples/plugins/loyalty-points/loyalty-points.wasm");
const DELIVERY: &str = include_str!("../../../examples/plugins/delivery-quote/delivery-quote.wat");

/// Pause between orders: about 20 a second.
const ORDER_INTERVAL: Duration = Duration::from_millis(50);

fn sub(hook: &str, priority: i32) -> Subscription {
    Subscription { hook: hook.to_owned(), priority }
}

fn demo_plugins() -> Vec<(Manifest, Vec<u8>)> {
    let delivery = wat::parse_str(DELIVERY).expect("the embedded delivery-quote plugin assembles");
    vec![
        (
            Manifest {
                name: "promo-discount".into(),
                version: "1.0.0".into(),
                description: Some("Promo codes (Python): validates the order and applies discounts.".into()),
                hooks: vec![sub("order.pricing", 10)],
                failure_policy: FailurePolicy::FailClosed,
                ..Manifest::default()
            },
            PROMO.to_vec(),
        ),
        (
            Manifest {
                name: "loyalty-points".into(),
                version: "1.0.0".into(),
                description: Some("Loyalty points (JavaScript) by customer tier.".into()),
                hooks: vec![sub("order.pricing", 20), sub("order.completed", 10)],
                config: [("points_per_1000".to_owned(), "10".to_owned())].into(),
                ..Manifest::default()
            },
            LOYALTY.to_vec(),
        ),
        (
            Manifest {
                name: "delivery-quote".into(),
                version: "0.3.0".into(),
                description: Some("Delivery fee and ETA (WAT): deliberately slow and flaky.".into()),
                hooks: vec![sub("order.pricing", 30)],
                limits: Limits { timeout: Duration::from_millis(50), ..Limits::default() },
                ..Manifest::default()
            },
            delivery,
        ),
    ]
}

/// Installs the demo plugins that are missing.
pub async fn install(registry: &Registry) {
    for (manifest, bytes) in demo_plugins() {
        if registry.plugin(&manifest.name).is_ok() {
            continue;
        }
        let name = manifest.name.clone();
        match registry.upload(manifest, bytes, true).await {
            Ok(_) => tracing::info!(message = "Demo plugin installed.", plugin = %name),
            Err(error) => tracing::error!(message = "Cannot install a demo plugin.", plugin = %name, %error),
        }
    }
}

/// Sends traffic until `stop`.
pub async fn traffic(registry: Registry, mut stop: watch::Receiver<bool>) {
    tracing::info!(message = "Demo traffic started: about 20 orders a second.");
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    let mut n: u64 = 0;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(ORDER_INTERVAL) => {}
            _ = stop.wait_for(|stopped| *stopped) => break,
        }
        n += 1;
        let order = order(&mut rng, n);
        if let Err(error) = registry.dispatch("order.pricing", order.clone(), HookMode::Filter).await {
            tracing::debug!(message = "Demo order refused.", %error);
        }
        if n.is_multiple_of(3) {
            let _ = registry.dispatch("order.completed", order, HookMode::Actions).await;
        }
    }
    tracing::info!(message = "Demo traffic stopped.", orders = n);
}

const MENU: &[(&str, &str, u32)] = &[
    ("bulgogi-bowl", "Bulgogi bowl", 12_500),
    ("bibimbap", "Bibimbap", 11_000),
    ("kimchi-jjigae", "Kimchi jjigae", 9_500),
    ("tteokbokki", "Tteokbokki", 8_000),
    ("fried-chicken", "Fried chicken", 19_000),
    ("mandu", "Mandu", 6_500),
    ("soju", "Soju", 5_000),
];
const PROMOS: &[Option<&str>] = &[None, None, Some("WELCOME10"), Some("FREESHIP"), Some("GOLD5"), Some("EXPIRED2024")];
const TIERS: &[&str] = &["bronze", "silver", "gold"];

/// A random order; one in twenty is invalid (a zero quantity), as real clients sometimes send.
fn order(rng: &mut fastrand::Rng, n: u64) -> Vec<u8> {
    let items: Vec<String> = (0..rng.usize(1..=4))
        .map(|_| {
            let (sku, name, price) = MENU[rng.usize(..MENU.len())];
            let quantity = if rng.u32(..20) == 0 { 0 } else { rng.u32(1..=3) };
            format!(r#"{{"sku":"{sku}","name":"{name}","quantity":{quantity},"unit_price":{price}}}"#)
        })
        .collect();
    let promo = match PROMOS[rng.usize(..PROMOS.len())] {
        Some(code) => format!(r#","promo_code":"{code}""#),
        None => String::new(),
    };
    format!(
        r#"{{"order_id":"ord-{n}","customer_id":"cust-{}","customer_tier":"{}","restaurant_id":"rest-{}","currency":"KRW","items":[{}]{promo}}}"#,
        rng.u32(1..500),
        TIERS[rng.usize(..TIERS.len())],
        rng.u32(1..20),
        items.join(",")
    )
    .into_bytes()
}
