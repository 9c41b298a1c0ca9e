//! A loaded plugin and the path of one invocation: admission, a fresh instance, the call under every limit,
//! and the record of what happened.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime};

use wasmtime::{Store, Trap, UpdateDeadline};

use crate::admission::{Slot, Slots};
use crate::bindings::{self, PluginPre};
use crate::cpu::{Execution, Metered, thread_minor_faults};
use crate::engine::{LoadOptions, Prewarm, Shared};
use crate::error::LoadError;
use crate::executor::Group;
use crate::inspect::Inspection;
use crate::state::{PluginConfig, State, Stop};
use plugwatch_model::Limits;
use plugwatch_model::{Invocation, Outcome};

/// Fuel given when a plugin has no budget: effectively unlimited, still measured.
const UNLIMITED_FUEL: u64 = i64::MAX as u64;
/// Longest `detail` message kept in a record.
const MAX_DETAIL_BYTES: usize = 4096;
/// Instantiating an instance ahead of use may take at most this long (or the plugin's timeout, if longer).
const PREWARM_DEADLINE: Duration = Duration::from_secs(2);
/// With fuel metering, a running guest writes its fuel counter back to the store (and yields) every this many
/// instructions: an invocation stopped by its timeout then reports what it executed, to within this count.
/// (wasmtime's epoch check does not write the counter back, so without this a call-free loop would report
/// next to nothing.) About 1 ms of execution on the reference machine.
pub(crate) const FUEL_SLICE: u64 = 2_000_000;

/// A loaded, validated plugin. Cheap to clone; invocations may run concurrently.
#[derive(Clone)]
pub struct Plugin {
    inner: Arc<Inner>,
}

struct Inner {
    /// This plugin, weakly: background refills stop once the plugin is dropped.
    me: Weak<Inner>,
    shared: Arc<Shared>,
    inspection: Inspection,
    pre: PluginPre<State>,
    limits: Limits,
    config: PluginConfig,
    slots: Slots,
    cold_start: Duration,
    warm: WarmPool,
    /// This plugin's queue in the guest executor.
    group: Group,
    /// Whether its last invocation outlasted its first slice: the next one then goes straight to the guest
    /// executor instead of starting on the caller's thread.
    slow: AtomicBool,
}

/// Instances made ahead of time, each used by exactly one invocation and then dropped. How many it keeps
/// follows demand, within `0..=max` and the process's pool memory budget:
/// - an invocation that finds it empty (a miss) raises the target by one;
/// - after a sizing window in which it never ran dry and one instance was never needed, it lowers it by one;
/// - once no invocation has drawn from it for the runtime's `pool_idle_after`, it drops to 0 and gives its
///   instances back, until the next invocation (a miss) starts it again at 1.
///
/// The stores of finished invocations come back here too: the refill drops them, which resets their memory
/// slots, so that neither the reset nor the next instantiation is paid on an invocation's path.
struct WarmPool {
    max: usize,
    target: AtomicUsize,
    ready: Mutex<Vec<Warm>>,
    spent: Mutex<Vec<Store<State>>>,
    /// Invocations that found the pool empty (with a maximum above 0).
    misses: AtomicU64,
    refilling: AtomicBool,
    /// Whether the sizing task runs (it stops once the pool is idle).
    sizing: AtomicBool,
    /// Draws (hits and misses) and misses since the last sizing window, and the fewest instances left
    /// ready after a draw in it.
    window_draws: AtomicU64,
    window_misses: AtomicU64,
    low_water: AtomicUsize,
    /// Consecutive sizing windows without a draw.
    idle_windows: AtomicU64,
    /// Bytes held by the ready instances.
    bytes: AtomicU64,
    /// The most any instantiation of the plugin faulted in (at first, the trial's): what each ready
    /// instance is counted at.
    instance_bytes: AtomicU64,
}

struct Warm {
    store: Store<State>,
    instance: bindings::Plugin,
    /// What it is counted at while it waits (see [`WarmPool::put`]).
    bytes: u64,
}

/// How often a pool reconsiders its size.
const SIZING_WINDOW: Duration = Duration::from_secs(5);

impl Plugin {
    pub(crate) async fn start(
        shared: Arc<Shared>,
        inspection: Inspection,
        pre: PluginPre<State>,
        options: LoadOptions,
    ) -> Result<Plugin, LoadError> {
        let config: PluginConfig = Arc::new(options.config);
        let limits = options.limits;
        // A trial instantiation proves the component starts within its limits and measures its cold start. A
        // second one measures what instantiating costs from then on (the first also pays one-off costs such
        // as faulting in the code): only a plugin slow to instantiate even then is worth pre-instantiating,
        // which costs a hand-off to another thread per invocation.
        let mut trial = trial_instantiation(&shared, &config, &limits, &pre).await?;
        let cold_start = trial.took;
        let max = match options.prewarm {
            Prewarm::Off => 0,
            Prewarm::Instances(n) => n,
            Prewarm::Auto if cold_start > shared.config.prewarm_threshold => {
                trial = trial_instantiation(&shared, &config, &limits, &pre).await?;
                if trial.took > shared.config.prewarm_threshold { shared.config.prewarm_instances } else { 0 }
            }
            Prewarm::Auto => 0,
        };
        let plugin = Plugin {
            inner: Arc::new_cyclic(|me| Inner {
                me: me.clone(),
                slots: Slots::new(limits.max_concurrency, limits.max_queue),
                shared,
                inspection,
                pre,
                limits,
                config,
                cold_start,
                warm: WarmPool::new(max, trial.bytes),
                group: NEXT_GROUP.fetch_add(1, Ordering::Relaxed),
                slow: AtomicBool::new(false),
            }),
        };
        plugin.inner.refill();
        Ok(plugin)
    }

    /// Lowercase hex sha256 of the component.
    pub fn sha256(&self) -> &str {
        &self.inner.inspection.sha256
    }

    /// Size of the component in bytes.
    pub fn size(&self) -> usize {
        self.inner.inspection.size
    }

    /// The component's imports.
    pub fn imports(&self) -> &[String] {
        &self.inner.inspection.imports
    }

    /// The component's exports (`handle`, and whatever its toolchain added).
    pub fn exports(&self) -> &[String] {
        &self.inner.inspection.exports
    }

    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// How long one instantiation took when the plugin was loaded.
    pub fn cold_start(&self) -> Duration {
        self.inner.cold_start
    }

    /// How many pre-instantiated instances this plugin keeps ready now (it follows demand; see [`Plugin::pool`]).
    pub fn prewarm_target(&self) -> usize {
        self.inner.warm.target()
    }

    /// The most pre-instantiated instances this plugin keeps ready.
    pub fn prewarm_max(&self) -> usize {
        self.inner.warm.max
    }

    /// How many pre-instantiated instances are ready now.
    pub fn prewarmed(&self) -> usize {
        self.inner.warm.lock().len()
    }

    /// The pool of pre-instantiated instances: its maximum and target, what is ready and the memory it holds,
    /// and the invocations that found it empty.
    pub fn pool(&self) -> plugwatch_model::PoolStats {
        let warm = &self.inner.warm;
        plugwatch_model::PoolStats {
            max: warm.max,
            target: warm.target(),
            ready: self.prewarmed(),
            misses: warm.misses.load(Ordering::Relaxed),
            bytes: warm.bytes.load(Ordering::Relaxed),
        }
    }

    /// Invocations of this plugin executing now.
    pub fn in_flight(&self) -> u32 {
        self.inner.slots.in_use()
    }

    /// Invocations of this plugin waiting for a slot now.
    pub fn queued(&self) -> u32 {
        self.inner.slots.waiting()
    }

    /// Runs the plugin once in a fresh instance and returns what happened and what it cost.
    /// Never fails: every failure is an [`Outcome`] in the record.
    pub async fn invoke(&self, hook: &str, input: &[u8]) -> Invocation {
        let inner = &*self.inner;
        let admitted = Instant::now();
        let mut record = Invocation::new(SystemTime::now(), input.len());
        if input.len() > inner.limits.max_input_bytes {
            record.fail(
                Outcome::InputTooLarge,
                format!("input is {} bytes, over the limit of {} bytes", input.len(), inner.limits.max_input_bytes),
            );
            record.wall = admitted.elapsed();
            return record;
        }
        let admission = inner.admit(admitted + inner.limits.timeout).await;
        record.concurrency = inner.slots.in_use();
        let Some((_own, _global, waited)) = admission else {
            record.fail(
                Outcome::Rejected,
                format!(
                    "overloaded: {} running and {} queued (the plugin's concurrency and queue limits)",
                    inner.limits.max_concurrency, inner.limits.max_queue
                ),
            );
            record.wall = admitted.elapsed();
            record.queued = record.wall;
            return record;
        };
        // Clock reads cost ~20 ns each: reuse the admission reading unless the invocation had to wait.
        let start = if waited { Instant::now() } else { admitted };

        let _active = inner.shared.ticker.active();
        let execution = Execution::new(start);
        // The first slice runs here, on the caller's thread (most invocations end within it); one that
        // outlasts it continues on the guest executor, as does every invocation of a plugin whose last one did.
        let task = {
            let this = self.inner.clone();
            let (hook, input) = (hook.to_owned(), input.to_vec());
            let meter = execution.clone();
            let future =
                Metered::new(execution.clone(), async move { this.execute(&hook, &input, start, meter).await });
            let waiting = execution.clone();
            let inline = !inner.slow.load(Ordering::Relaxed);
            inner.shared.executor.spawn(inner.group, future, inline, move || waiting.mark_runnable())
        };
        let finished = task.fallible().await;
        inner.slow.store(execution.polls() > 1, Ordering::Relaxed);
        record.cpu = execution.cpu();
        record.queued = (start - admitted) + execution.waited();
        match finished {
            Some((result, store, instantiate)) => {
                record.instantiate = instantiate;
                inner.finish(&mut record, result, &store, &execution);
                inner.retire(store);
            }
            None => record.fail(Outcome::Rejected, "the runtime shut down before the invocation finished"),
        }
        record.wall = admitted.elapsed();
        record
    }
}

type CallResult = wasmtime::Result<Result<Vec<u8>, String>>;

/// Scheduling groups (one per loaded plugin) are numbered from here.
static NEXT_GROUP: AtomicU64 = AtomicU64::new(0);

impl Inner {
    /// Takes a concurrency slot for this plugin and one in the process, waiting in a bounded queue at most
    /// until `wait_until`. `None` means the invocation must be rejected.
    /// The flag says whether it had to wait.
    async fn admit(&self, wait_until: Instant) -> Option<(Slot<'_>, Slot<'_>, bool)> {
        let (own, own_waited) = self.slots.take(wait_until).await?;
        let (global, global_waited) = self.shared.in_flight.take(wait_until).await?;
        Some((own, global, own_waited || global_waited))
    }

    /// Gets an instance (pre-instantiated or fresh) and calls `handle` under the plugin's limits.
    async fn execute(
        &self,
        hook: &str,
        input: &[u8],
        start: Instant,
        execution: Arc<Execution>,
    ) -> (CallResult, Store<State>, Duration) {
        let deadline = start + self.wall_backstop();
        let warm = self.warm.take(&self.shared);
        if self.warm.max > 0 {
            self.refill();
            self.size_pool_later();
        }
        let (mut store, instance, instantiate) = match warm {
            Some(Warm { mut store, instance, .. }) => {
                store.data_mut().deadline = deadline;
                store.data_mut().execution = Some((execution, self.limits.timeout));
                store.data_mut().log.restart_clock(start);
                (store, instance, Duration::ZERO)
            }
            None => {
                // Instantiation is the first thing this future executes, so its time is the execution so
                // far, which leaves out any wait for a guest thread: that is in `queued` already (timing it
                // from admission counted such a wait twice, and the parts added up to more than the whole).
                let mut store = new_store(&self.shared, &self.config, &self.limits, start, deadline);
                store.data_mut().execution = Some((execution.clone(), self.limits.timeout));
                let instantiated = self.pre.instantiate_async(&mut store).await;
                let instantiate = execution.so_far();
                match instantiated {
                    Ok(instance) => (store, instance, instantiate),
                    Err(error) => return (Err(error), store, instantiate),
                }
            }
        };
        if self.shared.config.meter_instructions {
            store.set_fuel(self.fuel_budget()).expect("fuel metering is enabled");
        }
        // Relative to the current epoch: a deadline set when the instance was made has long passed, and
        // would make the guest yield at its first check.
        store.set_epoch_deadline(1);
        let result = instance.call_handle(&mut store, hook, input).await;
        (result, store, instantiate)
    }

    fn fuel_budget(&self) -> u64 {
        self.limits.fuel.unwrap_or(UNLIMITED_FUEL)
    }

    /// How long on the wall clock an invocation may take, waiting included, before it is stopped anyway.
    fn wall_backstop(&self) -> Duration {
        self.limits.timeout.saturating_mul(self.shared.config.wall_backstop_factor.max(1))
    }

    /// Turns the call's result and the store's meters into the record.
    fn finish(&self, record: &mut Invocation, result: CallResult, store: &Store<State>, execution: &Execution) {
        let state = store.data();
        record.memory_peak_bytes = state.meter.peak;
        // When the deadline stops a guest, the fuel it consumed since the counter was last written back (at
        // its last call, return or fuel slice) is lost: for a timeout the count is short by under FUEL_SLICE.
        if self.shared.config.meter_instructions {
            record.instructions = store.get_fuel().ok().map(|left| self.fuel_budget().saturating_sub(left));
        }
        (record.logs, record.logs_dropped_bytes) = state.log.take();
        match result {
            Ok(Ok(output)) => {
                record.output_bytes = output.len() as u64;
                if output.len() > self.limits.max_output_bytes {
                    record.fail(
                        Outcome::OutputTooLarge,
                        format!(
                            "output is {} bytes, over the limit of {} bytes",
                            output.len(),
                            self.limits.max_output_bytes
                        ),
                    );
                } else {
                    record.output = Some(output);
                }
            }
            Ok(Err(message)) => record.fail(Outcome::PluginError, truncate(message)),
            Err(error) => self.classify(record, &error, state, execution),
        }
    }

    fn classify(&self, record: &mut Invocation, error: &wasmtime::Error, state: &State, execution: &Execution) {
        if state.stopped == Some(Stop::Timeout) {
            record.fail(Outcome::Timeout, format!("exceeded the execution-time limit of {:?}", self.limits.timeout));
        } else if state.stopped == Some(Stop::Backstop) {
            tracing::warn!(message = "An invocation was stopped by the wall-clock backstop.", plugin = %self.inspection.sha256, executed = ?execution.cpu(), waited = ?execution.waited());
            record.fail(
                Outcome::Timeout,
                format!(
                    "stopped by the wall-clock backstop of {:?} ({}× the timeout) after executing {:?}: the host is overloaded",
                    self.wall_backstop(),
                    self.shared.config.wall_backstop_factor,
                    execution.cpu()
                ),
            );
        } else if state.meter.hit {
            record.fail(
                Outcome::MemoryLimit,
                format!("tried to grow linear memory past the cap of {} bytes", self.limits.memory_bytes),
            );
        } else if error.downcast_ref::<Trap>() == Some(&Trap::OutOfFuel) {
            record.fail(Outcome::FuelExhausted, format!("exhausted its instruction budget of {}", self.fuel_budget()));
        } else if let Some(exit) = error.downcast_ref::<wasmtime_wasi::I32Exit>() {
            record.trap_kind = Some("exit".into());
            record.fail(Outcome::Trap, format!("the plugin called exit({})", exit.0));
        } else {
            record.trap_kind = Some(match error.downcast_ref::<Trap>() {
                Some(trap) => snake_case(&format!("{trap:?}")),
                None => "host_error".into(),
            });
            record.fail(Outcome::Trap, truncate(format!("{error:#}")));
        }
    }

    /// Hands a finished invocation's store back: with a pool, the refill drops it (resetting its slots) off
    /// the invocation's path; without one (a plugin quick to instantiate, with little to reset) it goes now.
    fn retire(&self, store: Store<State>) {
        if self.warm.max == 0 {
            return drop(store);
        }
        self.warm.spent().push(store);
        self.refill();
    }

    /// Starts the refill, unless it is running: it drops spent stores and instantiates until the pool holds
    /// its target (or the memory budget is reached).
    fn refill(&self) {
        if self.warm.max == 0 || self.warm.refilling.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.warm.refilling.store(false, Ordering::Release);
            return;
        };
        let weak = self.me.clone();
        // Instantiation is CPU work: do it on a blocking-pool thread, so the async workers that run
        // invocations are never held up by it (the OS scheduler shares the cores between them).
        runtime.clone().spawn_blocking(move || runtime.block_on(async move {
            while let Some(inner) = weak.upgrade() {
                let spent = std::mem::take(&mut *inner.warm.spent());
                let reset = !spent.is_empty();
                drop(spent);
                if inner.warm.wants_one(&inner.shared) {
                    match inner.prewarm_one().await {
                        Ok(warm) => inner.warm.put(&inner.shared, warm),
                        Err(error) => {
                            tracing::warn!(message = "Pre-instantiation failed.", plugin = %inner.inspection.sha256, error = %format!("{error:#}"));
                            inner.warm.refilling.store(false, Ordering::Release);
                            return;
                        }
                    }
                    continue;
                }
                if reset {
                    continue;
                }
                inner.warm.refilling.store(false, Ordering::Release);
                // A taker or a retiring invocation may have come between the check and the store.
                let more = inner.warm.wants_one(&inner.shared) || !inner.warm.spent().is_empty();
                if !more || inner.warm.refilling.swap(true, Ordering::AcqRel) {
                    return;
                }
            }
        }));
    }

    /// Starts the sizing task unless it runs: every [`SIZING_WINDOW`] it resizes the pool to its demand,
    /// and it stops once the pool has gone idle (the next draw starts it again).
    fn size_pool_later(&self) {
        if self.warm.sizing.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.warm.sizing.store(false, Ordering::Release);
            return;
        };
        let weak = self.me.clone();
        let window = SIZING_WINDOW.min(self.shared.config.pool_idle_after).max(Duration::from_millis(10));
        let idle_windows = self.shared.config.pool_idle_after.as_nanos().div_ceil(window.as_nanos()).max(1) as u64;
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(window).await;
                let Some(inner) = weak.upgrade() else { return };
                let busy = inner.warm.resize(&inner.shared, idle_windows);
                inner.refill();
                if !busy {
                    inner.warm.sizing.store(false, Ordering::Release);
                    // A draw between the last window and the store would have found the task running.
                    if inner.warm.window_draws.load(Ordering::Acquire) == 0
                        || inner.warm.sizing.swap(true, Ordering::AcqRel)
                    {
                        return;
                    }
                }
            }
        });
    }

    async fn prewarm_one(&self) -> wasmtime::Result<Warm> {
        let _active = self.shared.ticker.active();
        let now = Instant::now();
        let mut store =
            new_store(&self.shared, &self.config, &self.limits, now, now + PREWARM_DEADLINE.max(self.limits.timeout));
        let (instance, bytes) = instantiate_counted(&self.pre, &mut store).await;
        Ok(Warm { store, instance: instance?, bytes })
    }
}

impl Drop for Inner {
    /// An unloaded plugin's ready instances leave the process's pool memory with it.
    fn drop(&mut self) {
        self.shared.pool_bytes.fetch_sub(self.warm.bytes.load(Ordering::Relaxed), Ordering::Relaxed);
    }
}

impl WarmPool {
    /// A pool of at most `max`, starting at one instance (a plugin just loaded is about to be used), whose
    /// instances are expected to hold `instance_bytes` each.
    fn new(max: usize, instance_bytes: u64) -> WarmPool {
        WarmPool {
            max,
            target: AtomicUsize::new(max.min(1)),
            ready: Mutex::new(Vec::new()),
            spent: Mutex::new(Vec::new()),
            misses: AtomicU64::new(0),
            refilling: AtomicBool::new(false),
            sizing: AtomicBool::new(false),
            window_draws: AtomicU64::new(0),
            window_misses: AtomicU64::new(0),
            low_water: AtomicUsize::new(usize::MAX),
            idle_windows: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            instance_bytes: AtomicU64::new(instance_bytes),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Warm>> {
        self.ready.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn spent(&self) -> std::sync::MutexGuard<'_, Vec<Store<State>>> {
        self.spent.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn target(&self) -> usize {
        self.target.load(Ordering::Relaxed)
    }

    /// An instance for one invocation, if one is ready; a miss raises the target (up to `max`).
    fn take(&self, shared: &Shared) -> Option<Warm> {
        if self.max == 0 {
            return None;
        }
        self.window_draws.fetch_add(1, Ordering::AcqRel);
        let mut ready = self.lock();
        let taken = ready.pop();
        self.low_water.fetch_min(ready.len(), Ordering::Relaxed);
        drop(ready);
        match &taken {
            Some(warm) => self.release(shared, warm.bytes),
            None => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                self.window_misses.fetch_add(1, Ordering::Relaxed);
                let _ =
                    self.target.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| (t < self.max).then_some(t + 1));
            }
        }
        taken
    }

    /// Whether the refill should make another instance: below target, and within the memory budget.
    fn wants_one(&self, shared: &Shared) -> bool {
        if self.lock().len() >= self.target() {
            return false;
        }
        let next = self.instance_bytes.load(Ordering::Relaxed);
        shared.pool_bytes.load(Ordering::Relaxed) + next <= shared.config.pool_memory_budget_bytes
    }

    /// Adds a made instance, counted at the most any instantiation of the plugin faulted in: one made in a
    /// slot that kept its last instance's pages resident faults in less, but holds those pages all the same.
    fn put(&self, shared: &Shared, mut warm: Warm) {
        warm.bytes = self.instance_bytes.fetch_max(warm.bytes, Ordering::Relaxed).max(warm.bytes);
        self.bytes.fetch_add(warm.bytes, Ordering::Relaxed);
        shared.pool_bytes.fetch_add(warm.bytes, Ordering::Relaxed);
        self.lock().push(warm);
    }

    /// Takes `bytes` of ready instances off this pool's and the process's count (the inverse of `put`).
    fn release(&self, shared: &Shared, bytes: u64) {
        self.bytes.fetch_sub(bytes, Ordering::Relaxed);
        shared.pool_bytes.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// One sizing window's decision (see [`WarmPool`]); false once the pool is idle and empty. Instances
    /// over the new target join the spent stores, for the refill to drop off the async workers.
    fn resize(&self, shared: &Shared, idle_after_windows: u64) -> bool {
        let draws = self.window_draws.swap(0, Ordering::AcqRel);
        let misses = self.window_misses.swap(0, Ordering::Relaxed);
        let low_water = self.low_water.swap(usize::MAX, Ordering::Relaxed);
        let idle = if draws == 0 {
            self.idle_windows.fetch_add(1, Ordering::Relaxed) + 1
        } else {
            self.idle_windows.store(0, Ordering::Relaxed);
            0
        };
        let target = if idle >= idle_after_windows {
            0
        } else if draws > 0 && misses == 0 && low_water >= 1 {
            // An instance was left over after every draw: one fewer would have done.
            self.target().saturating_sub(1).max(1)
        } else {
            self.target()
        };
        self.target.store(target, Ordering::Relaxed);
        let surplus: Vec<Warm> = {
            let mut ready = self.lock();
            let keep = ready.len().min(target);
            ready.drain(keep..).collect()
        };
        self.release(shared, surplus.iter().map(|w| w.bytes).sum());
        self.spent().extend(surplus.into_iter().map(|w| w.store));
        target > 0
    }
}

/// What one trial instantiation took, and what it faulted in.
struct Trial {
    took: Duration,
    bytes: u64,
}

/// Instantiates the plugin once, as at load, and says how long that took.
async fn trial_instantiation(
    shared: &Shared,
    config: &PluginConfig,
    limits: &Limits,
    pre: &PluginPre<State>,
) -> Result<Trial, LoadError> {
    let _active = shared.ticker.active();
    let started = Instant::now();
    let mut store = new_store(shared, config, limits, started, started + PREWARM_DEADLINE.max(limits.timeout));
    let (instance, bytes) = instantiate_counted(pre, &mut store).await;
    instance.map_err(|e| {
        if store.data().meter.hit {
            LoadError::Instantiation(format!("its initial memory is over the cap of {} bytes", limits.memory_bytes))
        } else {
            LoadError::Instantiation(format!("{e:#}"))
        }
    })?;
    Ok(Trial { took: started.elapsed(), bytes })
}

/// Instantiates into `store`, and says how much memory that faulted in on this thread: what the instance
/// holds, where nothing else runs on the thread meanwhile (the refill's; at load, nearly so).
async fn instantiate_counted(
    pre: &PluginPre<State>,
    store: &mut Store<State>,
) -> (wasmtime::Result<bindings::Plugin>, u64) {
    let faults = thread_minor_faults();
    let instance = pre.instantiate_async(store).await;
    (instance, thread_minor_faults().saturating_sub(faults) * rustix::param::page_size() as u64)
}

/// A fresh store with the plugin's limits: memory cap, log budget, fuel, and the deadline check that runs
/// on every epoch tick (and lets other work run in between).
fn new_store(
    shared: &Shared,
    config: &PluginConfig,
    limits: &Limits,
    start: Instant,
    deadline: Instant,
) -> Store<State> {
    let state = State::new(config.clone(), limits.memory_bytes, limits.max_log_bytes, start, deadline);
    let mut store = Store::new(&shared.engine, state);
    store.limiter(|state| &mut state.meter);
    let half_tick = shared.config.epoch_tick / 2;
    store.epoch_deadline_callback(move |mut ctx| {
        let state = ctx.data_mut();
        if Instant::now() >= state.deadline {
            state.stopped = Some(Stop::Backstop);
            return Err(wasmtime::Error::msg("wall-clock limit reached"));
        }
        if let Some((execution, timeout)) = &state.execution {
            let slice = execution.current_slice();
            if execution.cpu() + slice >= *timeout {
                state.stopped = Some(Stop::Timeout);
                return Err(wasmtime::Error::msg("execution-time limit reached"));
            }
            // Resumed just now (after waiting for a thread, the epoch moved on): run a slice before yielding.
            if slice < half_tick {
                return Ok(UpdateDeadline::Continue(1));
            }
        }
        Ok(UpdateDeadline::Yield(1))
    });
    store.set_epoch_deadline(1);
    if shared.config.meter_instructions {
        store.fuel_async_yield_interval(Some(FUEL_SLICE)).expect("fuel metering is enabled");
        store.set_fuel(limits.fuel.unwrap_or(UNLIMITED_FUEL)).expect("fuel metering is enabled");
    }
    store
}

/// `MemoryOutOfBounds` → `memory_out_of_bounds`.
fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn truncate(mut message: String) -> String {
    if message.len() > MAX_DETAIL_BYTES {
        let mut end = MAX_DETAIL_BYTES;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push('…');
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trap_names_become_snake_case() {
        assert_eq!(snake_case("UnreachableCodeReached"), "unreachable_code_reached");
        assert_eq!(snake_case("StackOverflow"), "stack_overflow");
    }

    #[test]
    fn long_details_are_cut_on_a_char_boundary() {
        let cut = truncate("é".repeat(MAX_DETAIL_BYTES));
        assert!(cut.len() <= MAX_DETAIL_BYTES + '…'.len_utf8());
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn misses_raise_the_target_up_to_the_maximum_and_a_pool_of_none_never_misses() {
        let runtime = crate::Runtime::new(crate::RuntimeConfig::default()).unwrap();
        let shared = &runtime.shared;
        let warm = WarmPool::new(2, 0);
        assert_eq!(warm.target(), 1, "a pool starts at one instance");
        assert!(warm.take(shared).is_none());
        assert_eq!(warm.target(), 2);
        assert!(warm.take(shared).is_none());
        assert_eq!(warm.target(), 2, "never above the maximum");
        assert_eq!(warm.misses.load(Ordering::Relaxed), 2);
        let none = WarmPool::new(0, 0);
        assert!(none.take(shared).is_none());
        assert_eq!((none.target(), none.misses.load(Ordering::Relaxed)), (0, 0), "no pool instantiates by design");
    }

    #[test]
    fn the_target_follows_demand_and_an_idle_pool_empties() {
        let runtime = crate::Runtime::new(crate::RuntimeConfig::default()).unwrap();
        let shared = &runtime.shared;
        let warm = WarmPool::new(4, 0);
        warm.target.store(3, Ordering::Relaxed);
        // A window whose draws always left an instance over: one fewer would have done.
        warm.window_draws.store(5, Ordering::Relaxed);
        warm.low_water.store(1, Ordering::Relaxed);
        assert!(warm.resize(shared, 3));
        assert_eq!(warm.target(), 2);
        // A window that ran dry keeps the target (its misses raised it already).
        warm.window_draws.store(5, Ordering::Relaxed);
        warm.window_misses.store(1, Ordering::Relaxed);
        warm.low_water.store(0, Ordering::Relaxed);
        assert!(warm.resize(shared, 3));
        assert_eq!(warm.target(), 2);
        // Windows without a draw: the target holds until the idle time has passed, then drops to 0.
        assert!(warm.resize(shared, 3) && warm.resize(shared, 3));
        assert_eq!(warm.target(), 2);
        assert!(!warm.resize(shared, 3), "idle: the sizing task stops");
        assert_eq!(warm.target(), 0);
        // The next invocation is a miss and starts it again.
        assert!(warm.take(shared).is_none());
        assert_eq!(warm.target(), 1);
    }

    #[test]
    fn a_refill_stops_at_the_memory_budget() {
        let config = crate::RuntimeConfig { pool_memory_budget_bytes: 100, ..crate::RuntimeConfig::default() };
        let runtime = crate::Runtime::new(config).unwrap();
        let shared = &runtime.shared;
        let warm = WarmPool::new(4, 60);
        assert!(warm.wants_one(shared), "below target, and 60 bytes fit in 100");
        shared.pool_bytes.store(50, Ordering::Relaxed);
        assert!(!warm.wants_one(shared), "50 held by other pools: 60 more would exceed the budget");
        assert_eq!(runtime.pool_memory().budget_bytes, 100);
        assert_eq!(runtime.pool_memory().held_bytes, 50);
    }
}
