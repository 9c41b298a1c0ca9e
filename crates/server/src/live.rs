//! The dashboard's live feed: every `LIVE_INTERVAL` one task computes what the open pages show — every
//! plugin's row of the overview (serialised once each), the host, the alerts now — and publishes it as
//! one frame; each page's server-sent-events stream (`GET /api/v1/live?plugins=…`) writes its own part of
//! the frame (the plugins it shows), so ten open pages cost one computation and ten small writes. No frame
//! is computed while no page is open. Every event is a whole state (no deltas), so a page that reconnects
//! (the browser's `EventSource` does it by itself) resumes with the next event, and gets the current one at
//! once. Shutdown (its first moment, before draining) sends a closing frame, which ends every stream, so that
//! draining does not wait for them.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde::Deserialize;
use tokio::sync::watch;
use utoipa::IntoParams;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::ApiQuery;

/// How often the open pages get a new frame.
pub const LIVE_INTERVAL: Duration = Duration::from_secs(5);
/// The most plugins one stream may ask for (a page of the overview).
pub const MAX_PLUGINS: usize = 1000;

/// One state of everything the open pages show.
#[derive(Debug, Default)]
pub struct Frame {
    pub seq: u64,
    /// `"at":…,"host":…,"alerts":…` (a JSON object's members).
    head: String,
    /// Each plugin's overview row, as JSON.
    plugins: HashMap<String, String>,
    closing: bool,
}

/// Where frames are published.
pub struct Hub {
    tx: watch::Sender<Arc<Frame>>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub { tx: watch::Sender::new(Arc::new(Frame::default())) }
    }
}

impl Hub {
    /// Whether any page is listening.
    pub fn watched(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    fn publish(&self, frame: Frame) {
        if !self.tx.borrow().closing {
            self.tx.send_replace(Arc::new(frame));
        }
    }

    /// Ends every stream (at shutdown); nothing is published afterwards.
    pub fn close(&self) {
        let seq = self.tx.borrow().seq + 1;
        self.tx.send_replace(Arc::new(Frame { seq, closing: true, ..Frame::default() }));
    }
}

/// Computes a frame every [`LIVE_INTERVAL`] while a page is open, until `stop`; then ends every stream.
pub async fn run(state: AppState, mut stop: watch::Receiver<bool>) {
    let mut seq = 0;
    while !state.live.tx.borrow().closing {
        if state.live.watched() {
            seq += 1;
            let frame = compute(&state, seq).await;
            state.live.publish(frame);
        }
        tokio::select! {
            _ = tokio::time::sleep(LIVE_INTERVAL) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    state.live.close();
}

/// One frame: the overview rows, the host sample and the alerts now.
pub async fn compute(state: &AppState, seq: u64) -> Frame {
    let now = SystemTime::now();
    let plugins = crate::api::overview_rows(state, now)
        .into_iter()
        .map(|row| {
            let json = serde_json::to_string(&row).expect("a row serialises");
            (row.name, json)
        })
        .collect();
    let host = state.registry.telemetry().latest_host().map(|h| crate::dto::HostDto::new(&h));
    let alerts: Vec<crate::api::AlertDto> = match state.alerts.alerts_now().await {
        Ok(alerts) => alerts.into_iter().take(100).map(Into::into).collect(),
        Err(error) => {
            tracing::warn!(message = "The live feed could not read the alerts.", %error);
            Vec::new()
        }
    };
    let head = format!(
        "\"seq\":{seq},\"at\":{},\"host\":{},\"alerts\":{}",
        serde_json::to_string(&crate::dto::rfc3339(now)).expect("a string serialises"),
        serde_json::to_string(&host).expect("the host serialises"),
        serde_json::to_string(&alerts).expect("alerts serialise")
    );
    Frame { seq, head, plugins, closing: false }
}

/// The part of a frame one stream writes: the head and the rows of `plugins` (those that exist).
pub fn event_data(frame: &Frame, plugins: &[String]) -> String {
    let mut out = String::with_capacity(frame.head.len() + 16 + plugins.len() * 200);
    out.push('{');
    out.push_str(&frame.head);
    out.push_str(",\"plugins\":{");
    let mut first = true;
    for name in plugins {
        if let Some(row) = frame.plugins.get(name) {
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str(&serde_json::to_string(name).expect("a name serialises"));
            out.push(':');
            out.push_str(row);
        }
    }
    out.push_str("}}");
    out
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct LiveQuery {
    /// Comma-separated plugin names whose overview rows the events carry (at most 1000).
    plugins: Option<String>,
}

/// Server-sent events, one every 5 s: `event: update`, `id` the frame's sequence number, data
/// `{"seq","at","host","alerts":[…alerts now…],"plugins":{name: overview row}}` for the plugins asked for.
#[utoipa::path(get, path = "/api/v1/live", tag = "telemetry", params(LiveQuery),
    responses((status = 200, description = "An event stream", content_type = "text/event-stream"), crate::api::ApiErrors))]
pub async fn live(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<LiveQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let plugins: Vec<String> = q
        .plugins
        .as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect();
    if plugins.len() > MAX_PLUGINS {
        return Err(ApiError::bad_request(format!("`plugins` names at most {MAX_PLUGINS} plugins")));
    }
    let mut rx = state.live.tx.subscribe();
    // The first event comes at once: the current frame, or a fresh one when none has been computed yet.
    let first = {
        let current = rx.borrow_and_update().clone();
        if current.seq == 0 && !current.closing { Arc::new(compute(&state, 0).await) } else { current }
    };
    let stream = futures::stream::unfold((Some(first), rx, plugins), |(pending, mut rx, plugins)| async move {
        let frame = match pending {
            Some(frame) => frame,
            None => {
                rx.changed().await.ok()?;
                rx.borrow_and_update().clone()
            }
        };
        if frame.closing {
            return None;
        }
        let event = Event::default().event("update").id(frame.seq.to_string()).retry(Duration::from_secs(2));
        let event = event.data(event_data(&frame, &plugins));
        Some((Ok(event), (None, rx, plugins)))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
