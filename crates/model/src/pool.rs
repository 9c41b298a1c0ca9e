//! What a plugin's pool of pre-instantiated instances holds and how often it was found empty.

/// A plugin's pool of pre-instantiated instances now: each instance serves one invocation and is dropped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// How many instances the pool keeps ready (0: the plugin instantiates on the call's path).
    pub target: usize,
    /// How many are ready now.
    pub ready: usize,
    /// Invocations that found the pool empty and instantiated on their own path (a burst outran the
    /// refill), since the plugin was loaded.
    pub misses: u64,
}
