//! The process-wide runtime: one wasmtime `Engine` (pooling allocator, epoch interruption, optional fuel
//! metering), the linker with exactly the host functions a plugin may reach, the compilation cache on disk,
//! the global admission limit and the guest executor.
//!
//! Compiling leaves nothing behind in the process: a component is compiled by a throwaway engine of the
//! same settings on a thread pool of its own (see [`compile_isolated`]), and what the server keeps is the
//! compiled code mapped from the cache file, as after a warm start.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::admission::Slots;
use crate::bindings;
use crate::error::{LoadError, RuntimeError};
use crate::executor::Executor;
use crate::inspect::inspect;
use crate::plugin::Plugin;
use crate::state::State;
use crate::ticker::Ticker;
use plugwatch_model::Limits;

/// Settings for the whole process. Per-plugin settings are [`Limits`] and [`LoadOptions`].
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Count every WebAssembly instruction (fuel). Required for instruction budgets and the `instructions`
    /// measurement; costs compute-heavy guests time (see ARCHITECTURE.md for the figures).
    pub meter_instructions: bool,
    /// How often running guests check their wall-clock deadline (and yield to other work).
    pub epoch_tick: Duration,
    /// Instances that may exist at once (in flight plus pre-instantiated); sizes the pooling allocator.
    pub max_instances: u32,
    /// The highest memory cap any plugin may be given.
    pub max_memory_bytes: u64,
    /// The largest component accepted.
    pub max_plugin_bytes: usize,
    /// Invocations that may execute at once across all plugins.
    pub max_in_flight: u32,
    /// Where compiled components are cached, keyed by content hash and engine version.
    pub cache_dir: Option<PathBuf>,
    /// A plugin whose instantiation takes longer than this gets pre-instantiated instances ([`Prewarm::Auto`]).
    pub prewarm_threshold: Duration,
    /// The most pre-instantiated instances such a plugin keeps ready. How many it keeps follows its demand:
    /// one more after each invocation that found the pool empty, one fewer after a window in which one was
    /// never needed, none once it has been idle for `pool_idle_after`.
    pub prewarm_instances: usize,
    /// A plugin whose pool no invocation has drawn from for this long gives its instances back.
    pub pool_idle_after: Duration,
    /// The memory all plugins' pre-instantiated instances may hold at once, each counted at the most any
    /// instantiation of its plugin faulted in; a refill that would exceed it waits.
    pub pool_memory_budget_bytes: u64,
    /// Stack available to guest code; deeper recursion traps with `stack_overflow`.
    pub max_wasm_stack: usize,
    /// How much of an instance's linear memory (from its start) stays resident when its slot is reset for
    /// the next instance: reset in place (zeroed, or copied back from the heap image) rather than given
    /// back to the kernel, so that the next instance in the slot does not fault those pages in again.
    pub keep_resident_bytes: usize,
    /// Within `keep_resident_bytes`, reset only the pages the instance wrote (found with the kernel's
    /// `PAGEMAP_SCAN`, Linux 6.7 and later) instead of all of them. Where the kernel lacks it, at most
    /// [`FULL_RESET_BYTES`] are kept resident whatever `keep_resident_bytes` says: resetting all of a large
    /// keep-resident region would copy megabytes per instance.
    pub reset_dirty_pages_only: bool,
    /// Threads of the guest executor, which runs the invocations that outlast their first slice (one epoch
    /// tick), apart from the caller's async workers. Defaults to the number of cores.
    pub guest_threads: usize,
    /// OS niceness of the guest threads (0–19; higher yields the cores to the HTTP workers first).
    pub guest_nice: i32,
    /// A guest is stopped once this many times its timeout has passed on the wall clock, however little of it
    /// was execution: the backstop that keeps a starved invocation from holding its caller for ever.
    pub wall_backstop_factor: u32,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            meter_instructions: true,
            epoch_tick: Duration::from_millis(1),
            max_instances: 1000,
            max_memory_bytes: 1 << 30,
            max_plugin_bytes: 64 << 20,
            max_in_flight: 256,
            cache_dir: None,
            prewarm_threshold: Duration::from_micros(200),
            prewarm_instances: 4,
            pool_idle_after: Duration::from_secs(60),
            pool_memory_budget_bytes: 256 << 20,
            max_wasm_stack: 512 << 10,
            keep_resident_bytes: 64 << 20,
            reset_dirty_pages_only: true,
            guest_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            guest_nice: 10,
            wall_backstop_factor: 10,
        }
    }
}

/// How many pre-instantiated instances a plugin keeps ready. Each is used once and dropped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Prewarm {
    /// Pre-instantiate only when instantiation is slower than [`RuntimeConfig::prewarm_threshold`].
    #[default]
    Auto,
    Off,
    Instances(usize),
}

/// How to load one plugin. Its `Debug` names the config keys but not their values (some are secrets).
#[derive(Clone, Default)]
pub struct LoadOptions {
    pub limits: Limits,
    /// Values the plugin reads with `host.config`.
    pub config: BTreeMap<String, String>,
    /// Refuse the component unless its sha256 (hex) is this.
    pub expected_sha256: Option<String>,
    pub prewarm: Prewarm,
}

impl std::fmt::Debug for LoadOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadOptions")
            .field("limits", &self.limits)
            .field("config_keys", &self.config.keys().collect::<Vec<_>>())
            .field("expected_sha256", &self.expected_sha256)
            .field("prewarm", &self.prewarm)
            .finish()
    }
}

/// The plugin runtime. Cheap to clone; all clones share one engine.
#[derive(Clone)]
pub struct Runtime {
    pub(crate) shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<State>,
    pub(crate) ticker: Ticker,
    pub(crate) config: RuntimeConfig,
    pub(crate) in_flight: Slots,
    pub(crate) executor: Executor,
    /// Bytes held by all plugins' ready instances (against `config.pool_memory_budget_bytes`).
    pub(crate) pool_bytes: std::sync::atomic::AtomicU64,
    /// Identifies this engine's compiled-code format in cache file names.
    cache_key: String,
}

impl Runtime {
    pub fn new(config: RuntimeConfig) -> Result<Self, RuntimeError> {
        let engine = Engine::new(&engine_config(&config)).map_err(|e| RuntimeError::Engine(format!("{e:#}")))?;
        if slot_reset(&config).0 < config.keep_resident_bytes {
            tracing::warn!(
                message = "The kernel has no PAGEMAP_SCAN (Linux 6.7+): instance slots keep only 64 KiB resident, as resetting more in full would copy it for every instance.",
                keep_resident_bytes = config.keep_resident_bytes,
            );
        }
        let mut linker = Linker::new(&engine);
        link(&mut linker).map_err(|e| RuntimeError::Engine(format!("{e:#}")))?;
        if let Some(dir) = &config.cache_dir {
            std::fs::create_dir_all(dir).map_err(|source| RuntimeError::CacheDir { path: dir.clone(), source })?;
        }
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let cache_key = format!("{:016x}", hasher.finish());
        let ticker = Ticker::start(engine.clone(), config.epoch_tick)
            .map_err(|e| RuntimeError::Engine(format!("cannot start the epoch ticker: {e}")))?;
        // Beyond the in-flight limit, invocations wait (bounded by their own queues and timeouts).
        let in_flight = Slots::new(config.max_in_flight, u32::MAX);
        let executor = Executor::start(config.guest_threads, config.guest_nice)
            .map_err(|e| RuntimeError::Engine(format!("cannot start the guest threads: {e}")))?;
        let pool_bytes = std::sync::atomic::AtomicU64::new(0);
        Ok(Runtime {
            shared: Arc::new(Shared { engine, linker, ticker, config, in_flight, executor, pool_bytes, cache_key }),
        })
    }

    pub fn config(&self) -> &RuntimeConfig {
        &self.shared.config
    }

    /// The process-wide engine (for tools and benchmarks that compare against raw wasmtime).
    pub fn engine(&self) -> &Engine {
        &self.shared.engine
    }

    /// What the pre-instantiated instances of all plugins hold against the budget, and what the engine's
    /// idle instance slots keep resident.
    pub fn pool_memory(&self) -> plugwatch_model::PoolMemory {
        let slots = self.shared.engine.pooling_allocator_metrics();
        plugwatch_model::PoolMemory {
            held_bytes: self.shared.pool_bytes.load(std::sync::atomic::Ordering::Relaxed),
            budget_bytes: self.shared.config.pool_memory_budget_bytes,
            idle_slot_bytes: slots
                .map_or(0, |m| (m.unused_memory_bytes_resident() + m.unused_table_bytes_resident()) as u64),
        }
    }

    /// Scans, compiles (or loads from the cache), links and test-instantiates a plugin.
    pub async fn load(&self, bytes: Vec<u8>, options: LoadOptions) -> Result<Plugin, LoadError> {
        options.limits.validate(self.shared.config.max_memory_bytes)?;
        let shared = self.shared.clone();
        let expected = options.expected_sha256.clone();
        let (inspection, component) = tokio::task::spawn_blocking(move || {
            let inspection = inspect(&bytes, shared.config.max_plugin_bytes, expected.as_deref())?;
            let component = shared.compile(&bytes, &inspection.sha256)?;
            Ok::<_, LoadError>((inspection, component))
        })
        .await
        .map_err(|e| LoadError::Invalid(format!("compilation crashed: {e}")))??;
        let pre =
            self.shared.linker.instantiate_pre(&component).map_err(|e| LoadError::WorldMismatch(format!("{e:#}")))?;
        let pre = bindings::PluginPre::new(pre).map_err(|e| LoadError::WorldMismatch(format!("{e:#}")))?;
        Plugin::start(self.shared.clone(), inspection, pre, options).await
    }
}

impl Shared {
    fn compile(&self, bytes: &[u8], sha256: &str) -> Result<Component, LoadError> {
        let cached = self.cache_dir().map(|dir| dir.join(format!("{sha256}-{}.cwasm", self.cache_key)));
        if let Some(component) = cached.as_deref().filter(|p| p.exists()).and_then(|p| self.load_cached(p)) {
            return Ok(component);
        }
        let compiled = compile_isolated(&self.config, bytes);
        release_compiler_memory();
        let compiled = compiled?;
        if let Some(path) = &cached {
            match write_cache(&compiled, path) {
                // Use the cached copy: its code is a file mapping the kernel can share and evict, not tens
                // of megabytes of anonymous memory for the life of the process.
                Ok(()) => {
                    if let Some(component) = self.load_cached(path) {
                        return Ok(component);
                    }
                }
                Err(error) => {
                    tracing::warn!(message = "Cannot cache compiled component.", path = %path.display(), %error);
                }
            }
        }
        // SAFETY: these bytes are the `precompile_component` output of an engine with this engine's settings,
        // made just now in this process; deserialization still checks the engine's compatibility.
        unsafe { Component::deserialize(&self.engine, &compiled) }.map_err(|e| LoadError::Invalid(format!("{e:#}")))
    }

    fn load_cached(&self, path: &Path) -> Option<Component> {
        // SAFETY: the cache directory is private to plugwatch, files appear in it only by atomic rename of
        // our own `serialize` output, and deserialization still checks the engine's compatibility.
        match unsafe { Component::deserialize_file(&self.engine, path) } {
            Ok(component) => Some(component),
            Err(error) => {
                tracing::warn!(message = "Discarding unusable cached component.", path = %path.display(), error = %format!("{error:#}"));
                let _ = std::fs::remove_file(path);
                None
            }
        }
    }

    fn cache_dir(&self) -> Option<&Path> {
        self.config.cache_dir.as_deref()
    }
}

/// Compiles `bytes` to the serialized form the cache holds, with an engine of `config`'s settings made for
/// this compile alone, on a thread pool made for it alone; both are gone when this returns.
///
/// Why not the process's engine and rayon's global pool: Cranelift keeps one reusable compilation context
/// per concurrently compiling thread inside the engine, for the engine's life, each grown to the largest
/// function it has compiled (CPython's interpreter loop is one); and an allocator with thread-local heaps
/// (mimalloc, the binary's) keeps memory freed from another thread in the heap of the thread that
/// allocated it until that thread allocates again, which an idle pool thread never does. After the first
/// compile of the Python and JavaScript examples a server kept about 250 MB resident that way; threads
/// that exit hand their heaps back.
fn compile_isolated(config: &RuntimeConfig, bytes: &[u8]) -> Result<Vec<u8>, LoadError> {
    let mut settings = engine_config(config);
    // Instance allocation is not part of the compiled code's compatibility; a pool would reserve memory.
    settings.allocation_strategy(InstanceAllocationStrategy::OnDemand);
    let engine =
        Engine::new(&settings).map_err(|e| LoadError::Invalid(format!("cannot set up the compiler: {e:#}")))?;
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("pw-compile-{i}"))
        .build()
        .map_err(|e| LoadError::Invalid(format!("cannot start the compiler threads: {e}")))?;
    // The engine is dropped on a pool thread too, while the pool still runs, so its contexts are freed
    // there; the pool's threads exit when it is dropped.
    let compiled = pool.install(move || engine.precompile_component(bytes));
    drop(pool);
    compiled.map_err(|e| LoadError::Invalid(format!("{e:#}")))
}

/// Compiling a large component makes Cranelift allocate hundreds of megabytes across its threads; glibc
/// keeps the freed memory in its arenas. Give it back, so a long-running server's RSS reflects its work.
fn release_compiler_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory to the OS; it is safe to call at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Writes `bytes` as the cache file `path`, which appears complete or not at all. The data goes into an
/// unnamed file in the cache directory (`O_TMPFILE`) that gets its name only once written, so a process
/// that exits mid-write (a compile abandoned at shutdown) leaves nothing behind; where the file system
/// cannot do that, a uniquely named temporary file is renamed into place. The directory is never created:
/// if it is gone (the data directory was deleted), this fails saying so.
fn write_cache(bytes: &[u8], path: &Path) -> std::io::Result<()> {
    use std::io::{Error, ErrorKind, Write};
    let dir = path.parent().expect("cache paths have a parent");
    let gone = || {
        Error::new(
            ErrorKind::NotFound,
            format!("the cache directory {} no longer exists; it is created only at startup", dir.display()),
        )
    };
    match unnamed_file(dir) {
        Ok(fd) => {
            let mut file = std::fs::File::from(fd);
            file.write_all(bytes)?;
            let proc_path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&file));
            use rustix::fs::{AtFlags, CWD, linkat};
            match linkat(CWD, proc_path.as_str(), CWD, path, AtFlags::SYMLINK_FOLLOW) {
                // Another load of the same component (the name is its content hash) got there first.
                Err(rustix::io::Errno::EXIST) => Ok(()),
                result => result.map_err(Error::from),
            }
        }
        Err(error) if error.kind() == ErrorKind::NotFound => Err(gone()),
        Err(_) if !dir.is_dir() => Err(gone()),
        Err(_) => {
            static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let unique = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let tmp = path.with_extension(format!("tmp{}-{unique}", std::process::id()));
            std::fs::write(&tmp, bytes)?;
            std::fs::rename(&tmp, path)
        }
    }
}

fn unnamed_file(dir: &Path) -> std::io::Result<std::os::fd::OwnedFd> {
    use rustix::fs::{CWD, Mode, OFlags, openat};
    let flags = OFlags::WRONLY | OFlags::TMPFILE | OFlags::CLOEXEC;
    Ok(openat(CWD, dir, flags, Mode::from_raw_mode(0o644))?)
}

/// The most of a slot's memory kept resident when every kept page is reset (no `PAGEMAP_SCAN`).
pub const FULL_RESET_BYTES: usize = 64 << 10;

/// How much of a slot's memory is kept resident, and whether only its written pages are reset: what
/// `config` asks for, where the kernel can scan for written pages.
fn slot_reset(config: &RuntimeConfig) -> (usize, bool) {
    let dirty_only = config.reset_dirty_pages_only && PoolingAllocationConfig::is_pagemap_scan_available();
    let keep = if dirty_only { config.keep_resident_bytes } else { config.keep_resident_bytes.min(FULL_RESET_BYTES) };
    (keep, dirty_only)
}

/// The wasmtime configuration of a [`Runtime`] with `config`: public for the benchmarks' raw-wasmtime
/// ceiling (`crates/baselines`), which must run on exactly this engine.
pub fn engine_config(config: &RuntimeConfig) -> Config {
    let (keep_resident, dirty_only) = slot_reset(config);
    let mut pool = PoolingAllocationConfig::new();
    let instances = config.max_instances;
    pool.total_component_instances(instances)
        .total_core_instances(instances.saturating_mul(16))
        .total_memories(instances.saturating_mul(4))
        .total_tables(instances.saturating_mul(4))
        .total_stacks(config.max_in_flight.max(1).saturating_add(8))
        .max_memory_size(config.max_memory_bytes as usize)
        .max_memories_per_component(16)
        .max_tables_per_component(16)
        .max_core_instances_per_component(64)
        .table_elements(1 << 16)
        // When a slot is reused, reset the pages an instance wrote within the first `keep_resident_bytes` of
        // its memory (64 MiB by default) and its table in place and keep them resident, instead of an madvise
        // that makes the next instance fault them back in. For the interpreted guests, whose calls write
        // hundreds of pages of an 11–18 MB heap image, this took the restaurant mix from 211–239 to
        // 255–293 requests/s (alternating runs, ARCHITECTURE.md); a small plugin pays the scan's system call
        // (about 0.2 µs per instance, `benches/invoke.rs`).
        .linear_memory_keep_resident(keep_resident)
        .pagemap_scan(if dirty_only { wasmtime::Enabled::Yes } else { wasmtime::Enabled::No })
        .table_keep_resident(64 << 10);
    let mut c = Config::new();
    c.wasm_component_model(true)
        .epoch_interruption(true)
        .consume_fuel(config.meter_instructions)
        .max_wasm_stack(config.max_wasm_stack)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    c
}

/// Links what a plugin may reach: the `host` interface, WASI 0.2 (granted nothing per store), and
/// `wasi:http` whose every request is refused.
fn link(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    bindings::Plugin::add_to_linker::<State, HasSelf<State>>(linker, |state| state)?;
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(linker)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_reset_in_full_never_keeps_more_than_64_kib_resident() {
        let config = |keep, dirty| RuntimeConfig {
            keep_resident_bytes: keep,
            reset_dirty_pages_only: dirty,
            ..RuntimeConfig::default()
        };
        assert_eq!(slot_reset(&config(64 << 20, false)), (FULL_RESET_BYTES, false));
        assert_eq!(slot_reset(&config(16 << 10, false)), (16 << 10, false));
        // Resetting only the written pages keeps what was asked for, where the kernel can find them.
        let expected = if PoolingAllocationConfig::is_pagemap_scan_available() {
            (64 << 20, true)
        } else {
            (FULL_RESET_BYTES, false)
        };
        assert_eq!(slot_reset(&config(64 << 20, true)), expected);
    }
}
