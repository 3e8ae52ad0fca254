//! Calls in flight per user and per account (issue 21 §4): one customer's
//! calls and streams (a thousand WatchTicket streams) cannot fill the
//! per-service slots (`gateway.upstream_concurrency`) every customer
//! shares. A call holds a [`Held`] place in both counts until its response
//! ends (a stream: until it closes). Keys are the 16-byte ids
//! ([`crate::id::Id`]): taking and giving back a place allocates nothing.

use std::hash::Hash;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::state::FastMap;

/// How many calls each key has in flight, up to a limit.
pub(crate) struct InFlight<K> {
    limit: u32,
    counts: Mutex<FastMap<K, u32>>,
}

impl<K: Hash + Eq + Copy + Send + 'static> InFlight<K> {
    pub(crate) fn new(limit: u32) -> Arc<Self> {
        Arc::new(Self {
            limit,
            counts: Mutex::new(FastMap::default()),
        })
    }

    /// A place for one more call of `key`, or `None` when it has `limit`
    /// in flight.
    pub(crate) fn enter(self: &Arc<Self>, key: K) -> Option<Held<K>> {
        let mut counts = self.counts.lock();
        let count = counts.entry(key).or_insert(0);
        if *count >= self.limit {
            if *count == 0 {
                counts.remove(&key);
            }
            return None;
        }
        *count += 1;
        Some(Held {
            counts: self.clone(),
            key,
        })
    }
}

/// One call's place; given back when dropped.
pub(crate) struct Held<K: Hash + Eq> {
    counts: Arc<InFlight<K>>,
    key: K,
}

impl<K: Hash + Eq> Drop for Held<K> {
    fn drop(&mut self) {
        let mut counts = self.counts.counts.lock();
        if let Some(count) = counts.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_gets_its_limit_and_places_come_back() {
        let in_flight = InFlight::new(2);
        let a = in_flight.enter("u1").unwrap();
        let _b = in_flight.enter("u1").unwrap();
        assert!(in_flight.enter("u1").is_none());
        assert!(
            in_flight.enter("u2").is_some(),
            "another key is not held up"
        );
        drop(a);
        assert!(in_flight.enter("u1").is_some());
    }

    #[test]
    fn keys_with_nothing_in_flight_are_forgotten() {
        let in_flight = InFlight::new(1);
        drop(in_flight.enter(7).unwrap());
        assert!(in_flight.counts.lock().is_empty());
        let none = InFlight::new(0);
        assert!(none.enter(7).is_none());
        assert!(none.counts.lock().is_empty());
    }
}
