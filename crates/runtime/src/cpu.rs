//! CPU time of the threads executing an invocation, accumulated over every poll of its future.
//!
//! Reading the thread CPU clock is a system call (about 250 ns on the reference machine, more than the rest
//! of the measurement put together), so the first poll, which for a typical plugin is the whole invocation
//! and lasts at most one epoch tick before the guest yields, is timed with the monotonic clock (a vDSO read):
//! the thread is on-CPU throughout unless the OS preempts it within that slice. Every later poll, which only
//! long-running invocations have, reads the thread CPU clock.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use rustix::time::{ClockId, clock_gettime};

/// CPU time the calling thread has consumed so far.
pub fn thread_cpu_time() -> Duration {
    let t = clock_gettime(ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

pin_project_lite::pin_project! {
    /// Wraps a future and adds up the CPU time spent inside its `poll`s, wherever they run.
    pub(crate) struct CpuMetered<F> {
        #[pin]
        inner: F,
        cpu: Duration,
        polls: u32,
        first_poll: Instant,
    }
}

impl<F> CpuMetered<F> {
    /// `now` is the caller's latest clock reading, taken just before the first poll (it saves a read).
    pub(crate) fn starting_at(now: Instant, inner: F) -> Self {
        CpuMetered { inner, cpu: Duration::ZERO, polls: 0, first_poll: now }
    }
}

impl<F: Future> Future for CpuMetered<F> {
    type Output = (F::Output, Duration);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        *this.polls += 1;
        let result = if *this.polls == 1 {
            let result = this.inner.poll(cx);
            *this.cpu += this.first_poll.elapsed();
            result
        } else {
            let start = thread_cpu_time();
            let result = this.inner.poll(cx);
            *this.cpu += thread_cpu_time().saturating_sub(start);
            result
        };
        result.map(|out| (out, *this.cpu))
    }
}
