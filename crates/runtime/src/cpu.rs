//! The execution meter of one invocation: the CPU time of the threads executing it, accumulated over every
//! poll of its future wherever those polls run, and the time it spent runnable but not running (waiting for
//! a guest thread). The epoch callback reads it to stop a guest whose *execution*, not its wall time, passed
//! the timeout.
//!
//! Reading the thread CPU clock is a system call (about 250 ns on the reference machine, more than the rest
//! of the measurement put together), so a first poll made inline by the caller, which for a typical plugin is
//! the whole invocation and lasts at most one epoch tick before the guest yields, is timed with the monotonic
//! clock (a vDSO read): the thread is on-CPU throughout unless the OS preempts it within that slice. Every
//! other poll, which only long-running invocations have, reads the thread CPU clock.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use rustix::time::{ClockId, clock_gettime};

/// CPU time the calling thread has consumed so far.
pub fn thread_cpu_time() -> Duration {
    let t = clock_gettime(ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// Page faults served without I/O on the calling thread so far.
pub fn thread_minor_faults() -> u64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a `rusage` into the pointer it is given and reads nothing from it.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_THREAD, usage.as_mut_ptr());
        usage.assume_init()
    };
    usage.ru_minflt as u64
}

/// No instant recorded (in [`Execution::runnable_since`]).
const NONE: u64 = u64::MAX;

/// What the poll wrapper, the executor's schedule function and the epoch callback share about one invocation.
/// Times are nanoseconds since `origin` (the start of execution), or thread-CPU nanoseconds.
pub(crate) struct Execution {
    origin: Instant,
    /// CPU time of the polls that have ended.
    executed: AtomicU64,
    /// Whether the current poll is timed with the thread CPU clock (else with the monotonic clock).
    by_cpu: AtomicBool,
    /// When the current poll started: thread CPU time if `by_cpu`, else time since `origin`.
    poll_start: AtomicU64,
    /// When the invocation last became runnable without being polled since ([`NONE`] if it is not waiting).
    runnable_since: AtomicU64,
    /// Time spent runnable but not running.
    waited: AtomicU64,
    polls: AtomicU64,
}

impl Execution {
    /// `origin` is the caller's latest clock reading, taken just before the first poll (it saves a read).
    pub(crate) fn new(origin: Instant) -> Arc<Self> {
        Arc::new(Execution {
            origin,
            executed: AtomicU64::new(0),
            by_cpu: AtomicBool::new(false),
            poll_start: AtomicU64::new(0),
            runnable_since: AtomicU64::new(NONE),
            waited: AtomicU64::new(0),
            polls: AtomicU64::new(0),
        })
    }

    /// The invocation was woken (or handed to the guest executor) and waits for a thread to poll it.
    pub(crate) fn mark_runnable(&self) {
        self.runnable_since.store(nanos(self.origin.elapsed()), Relaxed);
    }

    /// How long the poll under way has executed (when called from inside it).
    pub(crate) fn current_slice(&self) -> Duration {
        let start = Duration::from_nanos(self.poll_start.load(Relaxed));
        if self.by_cpu.load(Relaxed) {
            thread_cpu_time().saturating_sub(start)
        } else {
            self.origin.elapsed().saturating_sub(start)
        }
    }

    /// Execution time so far: the ended polls and the one under way (when called from inside it).
    pub(crate) fn so_far(&self) -> Duration {
        self.cpu() + self.current_slice()
    }

    /// CPU time of all ended polls.
    pub(crate) fn cpu(&self) -> Duration {
        Duration::from_nanos(self.executed.load(Relaxed))
    }

    /// Time spent runnable but not running (waiting for a guest thread).
    pub(crate) fn waited(&self) -> Duration {
        Duration::from_nanos(self.waited.load(Relaxed))
    }

    /// How many times the invocation was polled: more than one means it outlasted one slice (or blocked).
    pub(crate) fn polls(&self) -> u64 {
        self.polls.load(Relaxed)
    }

    fn begin_poll(&self) {
        let first = self.polls.fetch_add(1, Relaxed) == 0;
        let since = self.runnable_since.swap(NONE, Relaxed);
        if since != NONE {
            let now = nanos(self.origin.elapsed());
            self.waited.fetch_add(now.saturating_sub(since), Relaxed);
        }
        if first && since == NONE {
            // An inline first poll: on-CPU since `origin`, timed with the monotonic clock.
            self.by_cpu.store(false, Relaxed);
            self.poll_start.store(0, Relaxed);
        } else {
            self.by_cpu.store(true, Relaxed);
            self.poll_start.store(nanos(thread_cpu_time()), Relaxed);
        }
    }

    fn end_poll(&self) {
        self.executed.fetch_add(nanos(self.current_slice()), Relaxed);
    }
}

fn nanos(d: Duration) -> u64 {
    d.as_nanos().min(u128::from(NONE - 1)) as u64
}

pin_project_lite::pin_project! {
    /// Wraps an invocation's future and meters every poll of it into its [`Execution`].
    pub(crate) struct Metered<F> {
        #[pin]
        inner: F,
        execution: Arc<Execution>,
    }
}

impl<F> Metered<F> {
    pub(crate) fn new(execution: Arc<Execution>, inner: F) -> Self {
        Metered { inner, execution }
    }
}

impl<F: Future> Future for Metered<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        this.execution.begin_poll();
        let result = this.inner.poll(cx);
        this.execution.end_poll();
        result
    }
}
