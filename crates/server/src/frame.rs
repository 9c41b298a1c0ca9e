//! What every request and response passes through, in one service around the whole router: the request
//! body's total deadline and size limit, a JSON body for an error that came without one, and the
//! security headers.
//!
//! One service with one future, not a layer each: `Router::layer` wraps every route in another boxed
//! service, and each costs a boxed clone and a boxed future per request. Seven layers made one raised the
//! echo plugin's invoke requests/s by ~7 % (ARCHITECTURE.md, "HTTP").

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::response::Response;
use tower::{Layer, Service};

use crate::AppState;

/// Headers every response carries, whoever produced it (API, pages, errors, probes, 401s, the fallback);
/// a page that needs a looser Content-Security-Policy sets its own.
const SECURITY_HEADERS: [(HeaderName, &str); 5] = [
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::REFERRER_POLICY, "no-referrer"),
    (header::CACHE_CONTROL, "no-store"),
    (header::CONTENT_SECURITY_POLICY, "default-src 'none'; frame-ancestors 'none'"),
];

/// Wraps the routed application in [`Frame`].
pub fn around<S>(inner: S, state: AppState) -> Frame<<DefaultBodyLimit as Layer<S>>::Service> {
    let body_timeout = Duration::from_secs(state.config.http.body_timeout_secs);
    let inner = DefaultBodyLimit::max(state.config.http.max_body_bytes).layer(inner);
    Frame { inner, state, body_timeout }
}

/// The service [`around`] makes.
#[derive(Clone)]
pub struct Frame<S> {
    inner: S,
    state: AppState,
    body_timeout: Duration,
}

impl<S> Service<Request> for Frame<S>
where
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = FrameFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let method = request.method().clone();
        let upload = method == Method::POST && request.uri().path() == "/api/v1/plugins";
        let body_timeout = self.body_timeout;
        let request = request.map(|body| Body::new(DeadlineBody::new(body, body_timeout)));
        FrameFuture { inner: self.inner.call(request), state: Some((self.state.clone(), method, upload)) }
    }
}

pin_project_lite::pin_project! {
    /// The routed request's future, then the response's finishing touches.
    pub struct FrameFuture<F> {
        #[pin]
        inner: F,
        state: Option<(AppState, Method, bool)>,
    }
}

impl<F, E> Future for FrameFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = std::task::ready!(this.inner.poll(cx))?;
        let (state, method, upload) = this.state.take().expect("a FrameFuture is not polled after it finished");
        let mut response = crate::error::json_errors(&state, method, upload, response);
        let headers = response.headers_mut();
        for (name, value) in SECURITY_HEADERS {
            headers.entry(name).or_insert(HeaderValue::from_static(value));
        }
        Poll::Ready(Ok(response))
    }
}

/// The error a request body gives when it has not arrived in full within `http.body_timeout_secs`.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
pub struct BodyTimeout;

pin_project_lite::pin_project! {
    /// A request body that fails with [`BodyTimeout`] once its deadline has passed: a total limit on
    /// reading it, not a limit on the pause between two pieces (which a trickle of one byte a second
    /// would never hit).
    pub struct DeadlineBody {
        #[pin]
        inner: Body,
        #[pin]
        deadline: tokio::time::Sleep,
    }
}

impl DeadlineBody {
    pub fn new(inner: Body, limit: Duration) -> Self {
        DeadlineBody { inner, deadline: tokio::time::sleep(limit) }
    }
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let this = self.project();
        let frame = this.inner.poll_frame(cx);
        if frame.is_pending() && this.deadline.poll(cx).is_ready() {
            return Poll::Ready(Some(Err(axum::Error::new(BodyTimeout))));
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
