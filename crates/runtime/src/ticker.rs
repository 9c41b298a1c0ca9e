//! The epoch ticker: advances the engine's epoch so that running guests reach their deadline checks,
//! and sleeps while no guest runs so an idle host costs nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::thread::{self, JoinHandle, Thread};
use std::time::Duration;

use wasmtime::Engine;

/// Ticks without any running guest after which the ticker parks.
const IDLE_TICKS_BEFORE_PARKING: u32 = 1000;

pub(crate) struct Ticker {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    /// Guests currently executing (or being instantiated).
    active: AtomicUsize,
    parked: AtomicBool,
    stop: AtomicBool,
    thread: std::sync::OnceLock<Thread>,
}

/// Held while a guest may execute; keeps the ticker awake.
pub(crate) struct Active<'a>(&'a Shared);

impl Ticker {
    pub(crate) fn start(engine: Engine, tick: Duration) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            active: AtomicUsize::new(0),
            parked: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            thread: std::sync::OnceLock::new(),
        });
        let for_thread = shared.clone();
        let handle =
            thread::Builder::new().name("plugwatch-epoch".into()).spawn(move || run(&for_thread, &engine, tick))?;
        let _ = shared.thread.set(handle.thread().clone());
        Ok(Ticker { shared, thread: Some(handle) })
    }

    pub(crate) fn active(&self) -> Active<'_> {
        let shared = &*self.shared;
        shared.active.fetch_add(1, SeqCst);
        // Pairs with the ticker's store of `parked` followed by its load of `active`.
        if shared.parked.load(SeqCst)
            && let Some(t) = shared.thread.get()
        {
            t.unpark();
        }
        Active(shared)
    }
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, SeqCst);
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.shared.stop.store(true, SeqCst);
        if let Some(handle) = self.thread.take() {
            handle.thread().unpark();
            let _ = handle.join();
        }
    }
}

fn run(shared: &Shared, engine: &Engine, tick: Duration) {
    let mut idle = 0u32;
    while !shared.stop.load(SeqCst) {
        thread::sleep(tick);
        engine.increment_epoch();
        if shared.active.load(SeqCst) > 0 {
            idle = 0;
            continue;
        }
        idle += 1;
        if idle >= IDLE_TICKS_BEFORE_PARKING {
            shared.parked.store(true, SeqCst);
            if shared.active.load(SeqCst) == 0 && !shared.stop.load(SeqCst) {
                thread::park();
            }
            shared.parked.store(false, SeqCst);
            idle = 0;
        }
    }
}
