//! The guest executor: a few threads of their own, apart from the caller's async workers, that run
//! invocations which outlast their first slice. Its run queue is fair between plugins: it picks the runnable
//! invocation of the plugin that has executed least recently (a virtual execution time per plugin, as in the
//! kernel's CFS), first in, first out within a plugin, so one plugin's burst cannot starve another plugin and
//! runs roughly in order. The threads run at a lower OS priority, so the HTTP workers (and `/healthz`) are
//! served first when the cores are busy.
//!
//! It never blocks on I/O and knows nothing of wasmtime: it runs futures (`async-task` tasks) in slices, each
//! inside the tokio runtime of the caller that spawned it.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_task::{Runnable, ScheduleInfo, Task, WithInfo};

/// A plugin that becomes runnable after idling starts this far below the least virtual time of the busy
/// plugins, so it runs at the next slice boundary.
const NEWCOMER_CREDIT: Duration = Duration::from_millis(2);

/// Which plugin (scheduling group) a task belongs to.
pub(crate) type Group = u64;

pub(crate) struct Executor {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

struct Shared {
    queue: Mutex<RunQueue>,
    ready: Condvar,
    stop: AtomicBool,
}

#[derive(Default)]
struct RunQueue {
    groups: HashMap<Group, GroupQueue>,
    /// Never decreases: the virtual time of the last group picked.
    min_vruntime: u64,
}

struct GroupQueue {
    /// Nanoseconds this plugin has executed on the guest threads (offset when it arrives, see above).
    vruntime: u64,
    tasks: VecDeque<Runnable<Group>>,
    running: u32,
}

impl Executor {
    /// Starts `threads` guest threads at niceness `nice` (higher is lower priority; 0 leaves it as is).
    pub(crate) fn start(threads: usize, nice: i32) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(RunQueue::default()),
            ready: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let threads = (0..threads.max(1))
            .map(|i| {
                let shared = shared.clone();
                std::thread::Builder::new().name(format!("plugwatch-guest-{i}")).spawn(move || {
                    lower_priority(nice);
                    shared.run();
                })
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(Executor { shared, threads })
    }

    /// Makes `future` a task of `group`. With `inline`, its first slice runs now on the calling thread and it
    /// moves to the guest threads only if it does not finish in it; otherwise it is queued at once.
    /// `on_runnable` is called whenever the task is queued (to measure its wait).
    pub(crate) fn spawn<F>(
        &self,
        group: Group,
        future: F,
        inline: bool,
        on_runnable: impl Fn() + Send + Sync + 'static,
    ) -> Task<F::Output, Group>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let shared = self.shared.clone();
        // Host functions (WASI clocks, the pre-instantiation refill) need the caller's tokio runtime, also
        // when polled on a guest thread.
        let future = InRuntime { handle: tokio::runtime::Handle::try_current().ok(), inner: future };
        let schedule = move |runnable: Runnable<Group>, info: ScheduleInfo| {
            on_runnable();
            // A task that yielded goes back to the head of its plugin's queue: a plugin's invocations run
            // roughly to completion in order rather than all slowing down together.
            shared.push(runnable, info.woken_while_running);
        };
        let (runnable, task) =
            async_task::Builder::new().metadata(group).propagate_panic(true).spawn(|_| future, WithInfo(schedule));
        if inline {
            runnable.run();
        } else {
            runnable.schedule();
        }
        task
    }
}

pin_project_lite::pin_project! {
    /// Polls its future inside a tokio runtime's context.
    struct InRuntime<F> {
        handle: Option<tokio::runtime::Handle>,
        #[pin]
        inner: F,
    }
}

impl<F: Future> Future for InRuntime<F> {
    type Output = F::Output;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<F::Output> {
        let this = self.project();
        let _entered = this.handle.as_ref().map(|h| h.enter());
        this.inner.poll(cx)
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        {
            // Under the lock, so no thread can check the flag and then miss the wake-up.
            let _queue = self.shared.lock();
            self.shared.stop.store(true, Ordering::SeqCst);
        }
        self.shared.ready.notify_all();
        let me = std::thread::current().id();
        for handle in self.threads.drain(..) {
            // The last reference may be dropped by a task finishing on a guest thread: that one exits by itself.
            if handle.thread().id() != me {
                let _ = handle.join();
            }
        }
        // Tasks still queued are dropped (cancelled) with the queue; their callers see the cancellation.
        let groups = std::mem::take(&mut self.shared.lock().groups);
        drop(groups);
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, RunQueue> {
        // The queue is consistent between statements; a panic elsewhere cannot corrupt it.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, runnable: Runnable<Group>, front: bool) {
        if self.stop.load(Ordering::Relaxed) {
            return; // dropped: the task is cancelled
        }
        let group = *runnable.metadata();
        let mut queue = self.lock();
        let floor = queue.min_vruntime.saturating_sub(NEWCOMER_CREDIT.as_nanos() as u64);
        let entry = queue.groups.entry(group).or_insert_with(|| GroupQueue {
            vruntime: floor,
            tasks: VecDeque::new(),
            running: 0,
        });
        if front {
            entry.tasks.push_front(runnable);
        } else {
            entry.tasks.push_back(runnable);
        }
        drop(queue);
        self.ready.notify_one();
    }

    fn run(&self) {
        let mut queue = self.lock();
        loop {
            if self.stop.load(Ordering::SeqCst) {
                return;
            }
            let Some((group, runnable)) = queue.pick() else {
                queue = self.ready.wait(queue).unwrap_or_else(|e| e.into_inner());
                continue;
            };
            drop(queue);
            let started = Instant::now();
            runnable.run();
            let ran = started.elapsed();
            queue = self.lock();
            queue.charge(group, ran);
        }
    }
}

impl RunQueue {
    /// The first task of the runnable plugin with the least virtual time.
    fn pick(&mut self) -> Option<(Group, Runnable<Group>)> {
        let (&group, entry) =
            self.groups.iter_mut().filter(|(_, g)| !g.tasks.is_empty()).min_by_key(|(_, g)| g.vruntime)?;
        let runnable = entry.tasks.pop_front().expect("filtered on non-empty");
        entry.running += 1;
        self.min_vruntime = self.min_vruntime.max(entry.vruntime);
        Some((group, runnable))
    }

    /// Adds a slice's duration to its plugin's virtual time; forgets a plugin with nothing left to run.
    fn charge(&mut self, group: Group, ran: Duration) {
        let Some(entry) = self.groups.get_mut(&group) else { return };
        entry.vruntime = entry.vruntime.saturating_add(ran.as_nanos() as u64);
        entry.running -= 1;
        if entry.running == 0 && entry.tasks.is_empty() {
            self.groups.remove(&group);
        }
    }
}

/// Lowers the calling thread's scheduling priority (Linux `nice` applies per thread).
fn lower_priority(nice: i32) {
    if nice == 0 {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: setpriority on our own thread id only changes this thread's niceness.
        let result = unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, nice) };
        if result != 0 {
            tracing::warn!(message = "Cannot lower the guest threads' priority.", nice, error = %std::io::Error::last_os_error());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plugin_that_ran_least_goes_first_and_a_newcomer_goes_before_busy_ones() {
        let mut queue = RunQueue::default();
        let noop =
            |group: Group| async_task::Builder::new().metadata(group).spawn(|_| async {}, |_: Runnable<Group>| {}).0;
        for (group, vruntime) in [(1, 5_000_000), (2, 9_000_000)] {
            queue.groups.insert(group, GroupQueue { vruntime, tasks: [noop(group)].into(), running: 0 });
        }
        queue.min_vruntime = 5_000_000;
        let (first, _) = queue.pick().unwrap();
        assert_eq!(first, 1);
        queue.charge(1, Duration::from_millis(10)); // group 1 is now at 15 ms and idle: forgotten
        assert!(!queue.groups.contains_key(&1));
        let (second, _) = queue.pick().unwrap();
        assert_eq!(second, 2);
    }
}
