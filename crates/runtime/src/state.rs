//! The data each invocation's `Store` carries: the sandboxed WASI context, the bounded log, the memory meter
//! and the deadlines; plus the host side of the `plugwatch:plugin/host` interface.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use crate::bindings::{WitLevel, plugwatch::plugin::host};
use crate::cpu::Execution;
use plugwatch_model::{Level, LogLine, LogSource};

/// Operator-set configuration values of one plugin, shared by all its invocations.
pub type PluginConfig = Arc<BTreeMap<String, String>>;

/// Everything one `Store` holds. A fresh one is made for every instance; nothing outlives the invocation.
pub(crate) struct State {
    /// Built on first use: components that import no WASI never pay for it.
    wasi: Option<WasiCtx>,
    table: ResourceTable,
    http: WasiHttpCtx,
    http_hooks: DenyAllHttp,
    pub(crate) log: LogBuffer,
    pub(crate) meter: MemoryMeter,
    config: PluginConfig,
    /// Past this instant the epoch callback stops the guest whatever it executed: the wall-clock backstop.
    pub(crate) deadline: Instant,
    /// The execution-time limit and the meter it is checked against, once the invocation runs (none while
    /// an instance is made ahead of use).
    pub(crate) execution: Option<(Arc<Execution>, Duration)>,
    /// Why the epoch callback stopped the guest, if it did.
    pub(crate) stopped: Option<Stop>,
}

/// Why the epoch callback stopped a guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    /// It executed for its whole timeout.
    Timeout,
    /// The wall-clock backstop passed (it waited far longer than it ran).
    Backstop,
}

impl State {
    pub(crate) fn new(
        config: PluginConfig,
        memory_cap: u64,
        max_log_bytes: usize,
        start: Instant,
        deadline: Instant,
    ) -> Self {
        State {
            wasi: None,
            table: ResourceTable::new(),
            http: WasiHttpCtx::new(),
            http_hooks: DenyAllHttp,
            log: LogBuffer::new(max_log_bytes, start),
            meter: MemoryMeter { cap: memory_cap, total: 0, peak: 0, hit: false },
            config,
            deadline,
            execution: None,
            stopped: None,
        }
    }

    fn wasi(&mut self) -> &mut WasiCtx {
        if self.wasi.is_none() {
            let log = self.log.shared().clone();
            self.wasi = Some(
                // Nothing is granted: no preopened directories, no environment, no arguments, no network.
                // Clocks and randomness are the host's; stdout and stderr feed the invocation's bounded log.
                WasiCtx::builder()
                    .stdout(LogPipe { log: log.clone(), source: LogSource::Stdout })
                    .stderr(LogPipe { log, source: LogSource::Stderr })
                    .allow_tcp(false)
                    .allow_udp(false)
                    .allow_ip_name_lookup(false)
                    .build(),
            );
        }
        self.wasi.as_mut().expect("built above")
    }
}

impl host::Host for State {
    fn log(&mut self, level: WitLevel, message: String) {
        let level = match level {
            WitLevel::Trace => Level::Trace,
            WitLevel::Debug => Level::Debug,
            WitLevel::Info => Level::Info,
            WitLevel::Warn => Level::Warn,
            WitLevel::Error => Level::Error,
        };
        self.log.push(level, LogSource::Host, &message);
    }

    fn config(&mut self, key: String) -> Option<String> {
        self.config.get(&key).cloned()
    }
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        self.wasi();
        WasiCtxView { ctx: self.wasi.as_mut().expect("built by wasi()"), table: &mut self.table }
    }
}

impl WasiHttpView for State {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.http_hooks }
    }
}

/// Refuses every outgoing HTTP request. A later capability may grant named hosts here.
struct DenyAllHttp;

type SendRequestFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<wasmtime_wasi_http::WasiBody>,
                    Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                ),
                wasmtime_wasi_http::Error,
            >,
        > + Send,
>;

impl WasiHttpHooks for DenyAllHttp {
    fn send_request(
        &mut self,
        _request: http::Request<wasmtime_wasi_http::WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> SendRequestFuture {
        Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) })
    }
}

/// Tracks the instance's total linear memory and refuses growth past the plugin's cap.
pub(crate) struct MemoryMeter {
    cap: u64,
    total: u64,
    pub(crate) peak: u64,
    /// Set when a growth was refused: the invocation's outcome is then `memory_limit`.
    pub(crate) hit: bool,
}

/// The error a refused memory growth traps with.
#[derive(Debug, thiserror::Error)]
#[error("linear memory would grow to {desired} bytes, over the plugin's cap of {cap} bytes")]
pub(crate) struct MemoryLimitExceeded {
    desired: u64,
    cap: u64,
}

/// Most table entries any one table may hold: keeps a table bomb from eating host memory.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

impl wasmtime::ResourceLimiter for MemoryMeter {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let total = self.total - current as u64 + desired as u64;
        if total > self.cap {
            self.hit = true;
            return Err(MemoryLimitExceeded { desired: total, cap: self.cap }.into());
        }
        self.total = total;
        self.peak = self.peak.max(total);
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

/// The invocation's log: host `log` calls and WASI stdout/stderr lines, bounded in bytes. The shared
/// buffer (which WASI's stdout/stderr streams also hold) is only allocated once something is logged.
pub(crate) struct LogBuffer {
    cap: usize,
    start: Instant,
    shared: Option<Arc<Mutex<LogState>>>,
}

struct LogState {
    lines: Vec<LogLine>,
    /// Bytes charged so far: each line costs its message length plus one.
    used: usize,
    cap: usize,
    dropped_bytes: u64,
    start: Instant,
    /// Unterminated stdout / stderr text waiting for its newline.
    partial: [Vec<u8>; 2],
}

impl LogBuffer {
    fn new(cap: usize, start: Instant) -> Self {
        LogBuffer { cap, start, shared: None }
    }

    fn shared(&mut self) -> &Arc<Mutex<LogState>> {
        let (cap, start) = (self.cap, self.start);
        self.shared.get_or_insert_with(|| {
            Arc::new(Mutex::new(LogState {
                lines: Vec::new(),
                used: 0,
                cap,
                dropped_bytes: 0,
                start,
                partial: [Vec::new(), Vec::new()],
            }))
        })
    }

    /// Line times are measured from here (the start of execution).
    pub(crate) fn restart_clock(&mut self, start: Instant) {
        self.start = start;
        if let Some(shared) = &self.shared {
            lock(shared).start = start;
        }
    }

    fn push(&mut self, level: Level, source: LogSource, message: &str) {
        lock(self.shared()).push(level, source, message);
    }

    /// Flushes unterminated stream text and returns the lines and the count of dropped bytes.
    pub(crate) fn take(&self) -> (Vec<LogLine>, u64) {
        let Some(shared) = &self.shared else {
            return (Vec::new(), 0);
        };
        let mut state = lock(shared);
        for source in [LogSource::Stdout, LogSource::Stderr] {
            state.flush_partial(source);
        }
        (std::mem::take(&mut state.lines), state.dropped_bytes)
    }
}

fn lock(shared: &Mutex<LogState>) -> std::sync::MutexGuard<'_, LogState> {
    // A panic while holding this lock cannot leave a log inconsistent in a way that matters.
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

impl LogState {
    fn push(&mut self, level: Level, source: LogSource, message: &str) {
        let remaining = self.cap.saturating_sub(self.used);
        if remaining <= 1 {
            self.dropped_bytes += message.len() as u64;
            return;
        }
        let mut keep = message.len().min(remaining - 1);
        while !message.is_char_boundary(keep) {
            keep -= 1;
        }
        self.dropped_bytes += (message.len() - keep) as u64;
        self.used += keep + 1;
        self.lines.push(LogLine { at: self.start.elapsed(), level, source, message: message[..keep].to_owned() });
    }

    fn write_stream(&mut self, source: LogSource, mut bytes: &[u8]) {
        let slot = stream_slot(source);
        while let Some(newline) = bytes.iter().position(|&b| b == b'\n') {
            self.partial[slot].extend_from_slice(&bytes[..newline]);
            self.flush_partial(source);
            bytes = &bytes[newline + 1..];
        }
        if self.used + self.partial[slot].len() >= self.cap {
            // Past the budget already: count, do not buffer.
            self.dropped_bytes += bytes.len() as u64;
            return;
        }
        self.partial[slot].extend_from_slice(bytes);
    }

    fn flush_partial(&mut self, source: LogSource) {
        let slot = stream_slot(source);
        if self.partial[slot].is_empty() {
            return;
        }
        let text = std::mem::take(&mut self.partial[slot]);
        let level = if source == LogSource::Stderr { Level::Error } else { Level::Info };
        self.push(level, source, String::from_utf8_lossy(&text).trim_end_matches('\r'));
    }
}

fn stream_slot(source: LogSource) -> usize {
    usize::from(source == LogSource::Stderr)
}

/// A WASI stdout/stderr that appends to the invocation's log and never blocks or fails the guest.
#[derive(Clone)]
struct LogPipe {
    log: Arc<Mutex<LogState>>,
    source: LogSource,
}

/// Writes the guest may make before waiting; bytes past the log budget are dropped, not refused.
const PIPE_WRITE_BUDGET: usize = 64 << 10;

impl IsTerminal for LogPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogPipe {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LogPipe {
    async fn ready(&mut self) {}
}

impl OutputStream for LogPipe {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        lock(&self.log).write_stream(self.source, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(PIPE_WRITE_BUDGET)
    }
}

impl tokio::io::AsyncWrite for LogPipe {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        lock(&self.log).write_stream(self.source, buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(buf: &LogBuffer) -> (Vec<String>, u64) {
        let (lines, dropped) = buf.take();
        (lines.into_iter().map(|l| l.message).collect(), dropped)
    }

    #[test]
    fn log_is_bounded_and_counts_what_it_drops() {
        let mut buf = LogBuffer::new(10, Instant::now());
        buf.push(Level::Info, LogSource::Host, "hello");
        buf.push(Level::Info, LogSource::Host, "world!");
        buf.push(Level::Info, LogSource::Host, "more");
        let (lines, dropped) = messages(&buf);
        assert_eq!(lines, ["hello", "wor"]);
        assert_eq!(dropped, 3 + 4);
    }

    #[test]
    fn stream_text_is_split_into_lines_and_the_tail_flushed() {
        let mut buf = LogBuffer::new(1024, Instant::now());
        let shared = buf.shared().clone();
        lock(&shared).write_stream(LogSource::Stdout, b"one\ntw");
        lock(&shared).write_stream(LogSource::Stdout, b"o\nthree");
        lock(&shared).write_stream(LogSource::Stderr, b"oops\r\n");
        let (lines, dropped) = messages(&buf);
        assert_eq!(lines, ["one", "two", "oops", "three"]);
        assert_eq!(dropped, 0);
    }

    #[test]
    fn truncation_respects_utf8_boundaries() {
        let mut buf = LogBuffer::new(4, Instant::now());
        buf.push(Level::Info, LogSource::Host, "한국");
        let (lines, _) = messages(&buf);
        assert_eq!(lines, ["한"]);
    }
}
