//! At most a few updates in flight per account from this replica; the rest
//! wait here, in arrival order.
//!
//! Temporal admits at most 10 updates in flight per workflow and refuses the
//! eleventh with RESOURCE_EXHAUSTED. Each refusal also drops the history
//! service's cached copy of the workflow (an error releases it), and with it
//! a speculative workflow task the worker may be running: the worker's
//! completion then meets "workflow task not found", the run is evicted and
//! replayed, and sdk-core 0.10.1 was seen to trip its "unprocessed protocol
//! messages" check in that replay (tests/faults.rs, 100 redemptions racing on
//! one account). Waiting here instead costs a caller nothing it would not
//! have waited anyway: the account decides one workflow task at a time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::domain::CustomerId;

/// Updates one replica sends to one account at once, by default: two
/// replicas together stay within Temporal's 10.
pub const DEFAULT_PER_ACCOUNT: usize = 5;

/// Per-account queues of updates; cheap to clone.
#[derive(Clone)]
pub struct UpdateQueues {
    per_account: usize,
    accounts: Arc<Mutex<HashMap<String, Arc<Semaphore>>>>,
}

/// An update's place among its account's updates in flight (or in its
/// queue); dropping it lets the next one go, and forgets an account nobody
/// else is in or waiting for, also when its holder gave up waiting.
pub struct InFlight {
    customer: String,
    accounts: Arc<Mutex<HashMap<String, Arc<Semaphore>>>>,
    semaphore: Option<Arc<Semaphore>>,
    permit: Option<OwnedSemaphorePermit>,
}

impl UpdateQueues {
    /// Queues letting `per_account` updates through at once per account (at least one).
    pub fn new(per_account: usize) -> Self {
        Self { per_account: per_account.max(1), accounts: Arc::default() }
    }

    /// Waits until fewer than the limit of `customer`'s updates are in flight.
    pub async fn enter(&self, customer: &CustomerId) -> InFlight {
        let semaphore = {
            let mut accounts = self.accounts.lock().expect("update queues lock");
            accounts
                .entry(customer.as_str().to_owned())
                .or_insert_with(|| Arc::new(Semaphore::new(self.per_account)))
                .clone()
        };
        let mut place = InFlight {
            customer: customer.as_str().to_owned(),
            accounts: self.accounts.clone(),
            semaphore: Some(semaphore.clone()),
            permit: None,
        };
        place.permit = Some(semaphore.acquire_owned().await.expect("the semaphore is never closed"));
        place
    }

    /// Accounts with an update in flight or waiting (the map forgets the others).
    pub fn accounts(&self) -> usize {
        self.accounts.lock().expect("update queues lock").len()
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut accounts = self.accounts.lock().expect("update queues lock");
        drop(self.permit.take());
        drop(self.semaphore.take());
        // Only the map holds it now: nobody is in flight or waiting.
        if accounts.get(&self.customer).is_some_and(|s| Arc::strong_count(s) == 1) {
            accounts.remove(&self.customer);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn an_account_lets_its_limit_through_and_the_next_waits_for_a_place() {
        let queues = UpdateQueues::new(2);
        let (a, b) = (CustomerId::parse("a").unwrap(), CustomerId::parse("b").unwrap());
        let first = queues.enter(&a).await;
        let _second = queues.enter(&a).await;
        let _other = queues.enter(&b).await;
        let third = tokio::time::timeout(Duration::from_millis(50), queues.enter(&a)).await;
        assert!(third.is_err(), "a third update to one account waits");
        drop(first);
        let third = tokio::time::timeout(Duration::from_millis(50), queues.enter(&a)).await;
        assert!(third.is_ok(), "and goes once one is done");
        drop(third);
        drop(_second);
        drop(_other);
        assert_eq!(queues.accounts(), 0, "idle accounts are forgotten");

        // A caller that gives up while waiting leaves nothing behind.
        let holder = queues.enter(&a).await;
        let holder2 = queues.enter(&a).await;
        let gave_up = tokio::time::timeout(Duration::from_millis(20), queues.enter(&a)).await;
        assert!(gave_up.is_err(), "both places are taken");
        drop(holder);
        drop(holder2);
        assert_eq!(queues.accounts(), 0, "a waiter that gave up is forgotten too");
    }
}
