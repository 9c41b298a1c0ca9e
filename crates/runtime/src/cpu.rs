//! CPU time of the executing thread, accumulated over every poll of an invocation's future.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use rustix::time::{ClockId, clock_gettime};

/// CPU time the calling thread has consumed so far.
pub fn thread_cpu_time() -> Duration {
    let t = clock_gettime(ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

pin_project_lite::pin_project! {
    /// Wraps a future and adds up the thread CPU time spent inside its `poll`s, wherever they run.
    pub(crate) struct CpuMetered<F> {
        #[pin]
        inner: F,
        cpu: Duration,
    }
}

impl<F> CpuMetered<F> {
    pub(crate) fn new(inner: F) -> Self {
        CpuMetered { inner, cpu: Duration::ZERO }
    }
}

impl<F: Future> Future for CpuMetered<F> {
    type Output = (F::Output, Duration);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let start = thread_cpu_time();
        let result = this.inner.poll(cx);
        *this.cpu += thread_cpu_time().saturating_sub(start);
        result.map(|out| (out, *this.cpu))
    }
}
