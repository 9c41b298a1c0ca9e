//! Concurrency slots with a bounded wait queue: the admission control in front of every invocation.
//!
//! The fast path (a slot is free) is one compare-and-swap to take and one atomic add to give back, with no
//! lock; only invocations that must wait touch the `Notify`.

use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::time::Instant;

use tokio::sync::Notify;

pub(crate) struct Slots {
    free: AtomicU32,
    capacity: u32,
    waiting: AtomicU32,
    max_waiting: u32,
    freed: Notify,
}

/// A taken slot; given back on drop.
pub(crate) struct Slot<'a>(&'a Slots);

impl Slots {
    pub(crate) fn new(capacity: u32, max_waiting: u32) -> Self {
        Slots {
            free: AtomicU32::new(capacity),
            capacity,
            waiting: AtomicU32::new(0),
            max_waiting,
            freed: Notify::new(),
        }
    }

    /// Takes a slot, waiting until `until` if none is free and the queue has room; `None` means the caller
    /// must be turned away. The flag says whether it had to wait.
    pub(crate) async fn take(&self, until: Instant) -> Option<(Slot<'_>, bool)> {
        if let Some(slot) = self.try_take() {
            return Some((slot, false));
        }
        if self.waiting.fetch_add(1, SeqCst) >= self.max_waiting {
            self.waiting.fetch_sub(1, SeqCst);
            return None;
        }
        let slot = self.wait(until).await;
        self.waiting.fetch_sub(1, SeqCst);
        slot.map(|slot| (slot, true))
    }

    async fn wait(&self, until: Instant) -> Option<Slot<'_>> {
        loop {
            let notified = self.freed.notified();
            tokio::pin!(notified);
            // Register before re-checking, so a slot freed in between is not missed.
            notified.as_mut().enable();
            if let Some(slot) = self.try_take() {
                return Some(slot);
            }
            tokio::time::timeout_at(until.into(), notified).await.ok()?;
        }
    }

    fn try_take(&self) -> Option<Slot<'_>> {
        self.free.fetch_update(SeqCst, SeqCst, |free| free.checked_sub(1)).ok().map(|_| Slot(self))
    }

    /// Slots in use now.
    pub(crate) fn in_use(&self) -> u32 {
        self.capacity - self.free.load(SeqCst)
    }

    /// Callers waiting for a slot now.
    pub(crate) fn waiting(&self) -> u32 {
        self.waiting.load(SeqCst)
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.free.fetch_add(1, SeqCst);
        if self.0.waiting.load(SeqCst) > 0 {
            self.0.freed.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn full_slots_queue_up_to_the_limit_then_turn_callers_away() {
        let slots = Slots::new(1, 1);
        let soon = Instant::now() + Duration::from_secs(5);
        let (first, waited) = slots.take(soon).await.expect("a free slot");
        assert!(!waited);
        assert_eq!(slots.in_use(), 1);
        let queued = slots.take(soon);
        tokio::pin!(queued);
        assert!(futures_poll_once(queued.as_mut()).await.is_none(), "waits while the slot is taken");
        assert_eq!(slots.waiting(), 1);
        assert!(slots.take(soon).await.is_none(), "the queue is full");
        drop(first);
        assert!(queued.await.is_some_and(|(_, waited)| waited), "the waiter gets the freed slot");
        assert_eq!(slots.waiting(), 0);
    }

    #[tokio::test]
    async fn a_waiter_gives_up_at_its_deadline() {
        let slots = Slots::new(1, 4);
        let _held = slots.take(Instant::now()).await.unwrap();
        assert!(slots.take(Instant::now() + Duration::from_millis(20)).await.is_none());
        assert_eq!(slots.waiting(), 0);
    }

    /// Polls a future once; `Some` if it completed.
    async fn futures_poll_once<F: Future + Unpin>(mut f: F) -> Option<F::Output> {
        std::future::poll_fn(|cx| {
            std::task::Poll::Ready(match std::pin::Pin::new(&mut f).poll(cx) {
                std::task::Poll::Ready(v) => Some(v),
                std::task::Poll::Pending => None,
            })
        })
        .await
    }
}
