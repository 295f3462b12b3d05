//! Single flight: at most one running job per key, however many callers ask at once.
//!
//! A caller either joins the job that runs for its key, or starts one and gets the
//! `Permit` for it; the key is free again when the permit is dropped. The check for a
//! finished result (e.g. "is the blob in the store now?") runs under the same lock as the
//! lookup, so a job that publishes its result *before* dropping its permit can never be
//! missed by both checks and started twice.
//!
//! Must not: know what the jobs are.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};

pub struct Flights<K, V> {
    map: Arc<Mutex<HashMap<K, Arc<V>>>>,
}

impl<K, V> Default for Flights<K, V> {
    fn default() -> Self {
        Flights {
            map: Arc::default(),
        }
    }
}

/// What a lookup found.
pub enum Found<T, K: Eq + Hash, V> {
    /// The finished result, from the caller's own check.
    Done(T),
    /// A job that is running; join it.
    Running(Arc<V>),
    /// No job ran: this caller started one and must run it, holding the permit until its
    /// result is published.
    Started(Arc<V>, Permit<K, V>),
}

/// The right to run the job for a key; the key is free again once this is dropped.
pub struct Permit<K: Eq + Hash, V> {
    map: Arc<Mutex<HashMap<K, Arc<V>>>>,
    key: K,
    job: Arc<V>,
}

impl<K: Eq + Hash, V> Drop for Permit<K, V> {
    fn drop(&mut self) {
        let mut map = lock(&self.map);
        // Only our own entry: never one started after ours.
        if map
            .get(&self.key)
            .is_some_and(|j| Arc::ptr_eq(j, &self.job))
        {
            map.remove(&self.key);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere left a plain map behind; it is still consistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<K: Eq + Hash + Clone, V> Flights<K, V> {
    /// `done()` (checked first, under the lock), else the running job for `key`.
    pub fn find<T>(&self, key: &K, done: impl FnOnce() -> Option<T>) -> Option<Found<T, K, V>> {
        let map = lock(&self.map);
        if let Some(t) = done() {
            return Some(Found::Done(t));
        }
        map.get(key).map(|j| Found::Running(j.clone()))
    }

    /// As `find`, and when neither finds anything, starts the job made by `start`.
    pub fn find_or_start<T>(
        &self,
        key: &K,
        done: impl FnOnce() -> Option<T>,
        start: impl FnOnce() -> Arc<V>,
    ) -> Found<T, K, V> {
        let mut map = lock(&self.map);
        if let Some(t) = done() {
            return Found::Done(t);
        }
        if let Some(j) = map.get(key) {
            return Found::Running(j.clone());
        }
        let job = start();
        map.insert(key.clone(), job.clone());
        Found::Started(
            job.clone(),
            Permit {
                map: self.map.clone(),
                key: key.clone(),
                job,
            },
        )
    }

    /// The running job for `key`, if any.
    pub fn get(&self, key: &K) -> Option<Arc<V>> {
        lock(&self.map).get(key).cloned()
    }

    /// How many jobs run now.
    pub fn len(&self) -> usize {
        lock(&self.map).len()
    }

    /// Every running job.
    pub fn all(&self) -> Vec<Arc<V>> {
        lock(&self.map).values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started(f: Found<(), &'static str, u32>) -> (Arc<u32>, Permit<&'static str, u32>) {
        match f {
            Found::Started(j, p) => (j, p),
            _ => panic!("expected a new job"),
        }
    }

    #[test]
    fn one_job_per_key_until_its_permit_drops() {
        let flights: Flights<&str, u32> = Flights::default();
        let (job, permit) = started(flights.find_or_start(&"a", || None, || Arc::new(1)));
        assert_eq!(*job, 1);
        // A second caller joins instead of starting.
        match flights.find_or_start(&"a", || None::<()>, || Arc::new(2)) {
            Found::Running(j) => assert!(Arc::ptr_eq(&j, &job)),
            _ => panic!("expected to join the running job"),
        }
        // Other keys are independent.
        let (_, other) = started(flights.find_or_start(&"b", || None, || Arc::new(3)));
        assert_eq!(flights.len(), 2);
        drop(permit);
        assert!(flights.get(&"a").is_none());
        assert!(flights.find(&"a", || None::<()>).is_none());
        drop(other);
        assert_eq!(flights.len(), 0);
    }

    #[test]
    fn a_finished_result_wins_over_a_running_job() {
        let flights: Flights<&str, u32> = Flights::default();
        let (_j, _p) = started(flights.find_or_start(&"a", || None, || Arc::new(1)));
        assert!(matches!(
            flights.find_or_start(&"a", || Some(7), || Arc::new(2)),
            Found::Done(7)
        ));
        assert!(matches!(
            flights.find(&"a", || Some(7)),
            Some(Found::Done(7))
        ));
    }

    #[test]
    fn an_old_permit_never_frees_a_newer_job() {
        let flights: Flights<&str, u32> = Flights::default();
        let (_, old) = started(flights.find_or_start(&"a", || None, || Arc::new(1)));
        // The old job's entry is replaced only after it is gone...
        drop(old);
        let (new_job, _new) = started(flights.find_or_start(&"a", || None, || Arc::new(2)));
        // ...and a stale permit for the same key (made by hand here) leaves the new one.
        let stale = Permit {
            map: flights.map.clone(),
            key: "a",
            job: Arc::new(1),
        };
        drop(stale);
        assert!(flights.get(&"a").is_some_and(|j| Arc::ptr_eq(&j, &new_job)));
    }
}
