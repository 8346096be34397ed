//! Single-use items remembered for a time window: DPoP proofs at the gateway, signed SOAP
//! requests at the simulator. Bounded and failing closed: when full, a guard refuses new items
//! rather than forget ones it holds (a cache that evicts what it just took lets that replay in).

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What became of an item shown to the guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstUse {
    /// Not seen within the window: it is remembered now.
    Yes,
    /// Seen before: a replay.
    No,
    /// The guard holds as many items as it may: the item is refused, not taken.
    Full,
}

/// Two generations of items: the current one, and the one before it. A generation is kept for
/// at least one window after its last item came in, so an item is remembered for at least the
/// window, and at most two.
pub struct ReplayGuard {
    window: Duration,
    max_items: usize,
    generations: Mutex<Generations>,
}

struct Generations {
    current: HashSet<[u8; 32]>,
    previous: HashSet<[u8; 32]>,
    started: Instant,
}

impl ReplayGuard {
    pub fn new(window: Duration, max_items: usize) -> ReplayGuard {
        let generations = Generations { current: HashSet::new(), previous: HashSet::new(), started: Instant::now() };
        ReplayGuard { window, max_items, generations: Mutex::new(generations) }
    }

    pub fn first_use(&self, item: [u8; 32]) -> FirstUse {
        self.first_use_at(item, Instant::now())
    }

    /// As `first_use`, at `now` (which never goes back).
    fn first_use_at(&self, item: [u8; 32], now: Instant) -> FirstUse {
        // A panic elsewhere while holding the lock leaves the sets as they were: still usable.
        let mut generations = self.generations.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if now.duration_since(generations.started) >= self.window {
            generations.previous = std::mem::take(&mut generations.current);
            generations.started = now;
        }
        if generations.current.contains(&item) || generations.previous.contains(&item) {
            return FirstUse::No;
        }
        if generations.current.len() + generations.previous.len() >= self.max_items {
            return FirstUse::Full;
        }
        generations.current.insert(item);
        FirstUse::Yes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_item_is_taken_once_and_a_full_guard_refuses_rather_than_forgets() {
        let guard = ReplayGuard::new(Duration::from_secs(60), 3);
        for i in 0..3u8 {
            assert_eq!(guard.first_use([i; 32]), FirstUse::Yes);
        }
        assert_eq!(guard.first_use([0; 32]), FirstUse::No);
        assert_eq!(guard.first_use([9; 32]), FirstUse::Full);
        // Still remembered, however many were refused in between.
        for _ in 0..10 {
            assert_eq!(guard.first_use([7; 32]), FirstUse::Full);
        }
        assert_eq!(guard.first_use([2; 32]), FirstUse::No);
    }

    #[test]
    fn items_outlive_one_window_and_go_after_two() {
        let guard = ReplayGuard::new(Duration::from_secs(60), 10);
        let start = Instant::now();
        let at = |seconds: u64| start + Duration::from_secs(seconds);
        assert_eq!(guard.first_use_at([1; 32], at(1)), FirstUse::Yes);
        assert_eq!(guard.first_use_at([1; 32], at(70)), FirstUse::No, "kept into the next window");
        assert_eq!(guard.first_use_at([2; 32], at(140)), FirstUse::Yes);
        assert_eq!(guard.first_use_at([1; 32], at(140)), FirstUse::Yes, "forgotten after two windows");
    }
}
