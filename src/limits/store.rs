//! A keyed GCRA state store that can be asked without being changed, so that every limit a
//! call is subject to is checked before any of them is consumed.
//!
//! governor decides a call by handing its state store a closure that maps a key's old state
//! (its theoretical arrival time) to a verdict and a new state. [`Store`] stores that new state
//! for a [`Probe`] that consumes, and for a probe that only peeks runs the same closure on the
//! same state and throws the new state away: the verdict is exactly the one a consuming check
//! would give at that instant, and nothing is stored (not even an entry for an unseen key).

use std::convert::Infallible;

use governor::nanos::Nanos;
use governor::state::keyed::{DashMapStateStore, ShrinkableKeyedStateStore};
use governor::state::{NotKeyed, StateStore};

/// A key and whether checking it may consume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Probe {
    /// The limited thing (principal, role holder, tool…), already hashed to 64 bits.
    pub key: u64,
    /// Check only: report the verdict, store nothing.
    pub peek: bool,
}

/// GCRA states by 64-bit key, in a concurrent map ([`DashMapStateStore`]).
#[derive(Debug, Default)]
pub struct Store(DashMapStateStore<u64>);

/// A verdict carried out of a closure whose new state must not be stored.
enum Seen<T, E> {
    Conforms(T),
    Refused(E),
}

impl StateStore for Store {
    type Key = Probe;

    fn measure_and_replace<T, F, E>(&self, probe: &Probe, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        if !probe.peek {
            return self.0.measure_and_replace(&probe.key, f);
        }
        let Some(state) = self.0.get(&probe.key) else {
            return f(None).map(|(verdict, _)| verdict);
        };
        // A closure that never accepts leaves the state as it was.
        let seen = state.measure_and_replace(&NotKeyed::NonKey, |old| {
            Err::<(Infallible, Nanos), _>(match f(old) {
                Ok((verdict, _)) => Seen::Conforms(verdict),
                Err(refused) => Seen::Refused(refused),
            })
        });
        match seen {
            Ok(never) => match never {},
            Err(Seen::Conforms(verdict)) => Ok(verdict),
            Err(Seen::Refused(refused)) => Err(refused),
        }
    }
}

impl ShrinkableKeyedStateStore<Probe> for Store {
    fn retain_recent(&self, drop_below: Nanos) {
        ShrinkableKeyedStateStore::<u64>::retain_recent(&self.0, drop_below);
    }

    fn shrink_to_fit(&self) {
        self.0.shrink_to_fit();
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
