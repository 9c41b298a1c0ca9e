//! What a plugin's pool of pre-instantiated instances holds and how often it was found empty.

/// A plugin's pool of pre-instantiated instances now: each instance serves one invocation and is dropped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// The most it may keep ready (0: the plugin has no pool and instantiates on the call's path).
    pub max: usize,
    /// How many instances the pool keeps ready now: it follows demand within `0..=max`.
    pub target: usize,
    /// How many are ready now.
    pub ready: usize,
    /// Invocations that found the pool empty and instantiated on their own path (a burst outran the
    /// refill), since the plugin was loaded.
    pub misses: u64,
    /// Memory its ready instances hold, each counted at the most an instantiation of the plugin faulted in.
    pub bytes: u64,
}

/// The memory of all plugins' pools in one process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolMemory {
    /// Held by ready instances, each counted at the most an instantiation of its plugin faulted in.
    pub held_bytes: u64,
    /// What they may hold at most.
    pub budget_bytes: u64,
    /// Kept resident by the engine's idle instance slots (the reset-in-place part of their memory and
    /// tables), whoever used them last.
    pub idle_slot_bytes: u64,
}
