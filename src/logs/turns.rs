//! Turns to read log files: at most `logs.max_concurrent_queries` correlations read at once,
//! whoever asks for them (`/logs` and the Slack notifier alike).
//!
//! Each correlation may hold up to `logs.max_bytes_held` of text and reads on up to two threads,
//! so the limit is what bounds the memory and threads that log reading takes; a caller that
//! skipped it would let that grow with the alerts. The turns belong to the [`super::LogIndex`],
//! which every caller shares, so no caller can end up with a pool of its own.
//!
//! How to wait is the caller's choice: `/logs` refuses a query when no turn is free
//! ([`QueryTurns::try_take`], a 429), since each waiting request would hold a connection and
//! a blocking thread; the notifier waits ([`QueryTurns::take`]), since it posts one message at a
//! time and a page should carry its logs. Waiting cannot deadlock: a turn is taken alone (never
//! while holding another), and is given back when the blocking read that holds it ends, which
//! does not depend on anyone waiting. The semaphore is fair, so a waiter is served before any
//! later query, and waits at most for the shortest running read.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The pool of turns. Clones share it.
#[derive(Debug, Clone)]
pub struct QueryTurns {
    semaphore: Arc<Semaphore>,
}

/// A turn to read: held for as long as the correlation reads, and given back on drop. Move it
/// into the blocking task that reads, so the turn ends when the read does, not when a caller
/// that stopped waiting for the answer goes away.
#[derive(Debug)]
pub struct QueryTurn {
    _permit: OwnedSemaphorePermit,
}

impl QueryTurns {
    /// `count` turns (`logs.max_concurrent_queries`, at least 1 once validated).
    pub fn new(count: usize) -> Self {
        QueryTurns { semaphore: Arc::new(Semaphore::new(count)) }
    }

    /// A turn if one is free now, else `None` (nobody waiting is overtaken: a turn given back
    /// goes to the longest waiter first).
    pub fn try_take(&self) -> Option<QueryTurn> {
        Arc::clone(&self.semaphore).try_acquire_owned().ok().map(|permit| QueryTurn { _permit: permit })
    }

    /// A turn, waiting in line for one.
    pub async fn take(&self) -> QueryTurn {
        let permit =
            Arc::clone(&self.semaphore).acquire_owned().await.expect("the query turns' semaphore is never closed");
        QueryTurn { _permit: permit }
    }

    /// Turns free now.
    pub fn available(&self) -> usize {
        self.semaphore.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_waiter_gets_the_next_turn_given_back_before_a_later_try() {
        let turns = QueryTurns::new(1);
        let reading = turns.try_take().unwrap();
        assert!(turns.try_take().is_none());
        let waiter = tokio::spawn({
            let turns = turns.clone();
            async move { turns.take().await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "no turn is free: the waiter waits");
        drop(reading);
        // Given back, the turn goes to the waiter, not to a query trying at that moment.
        assert!(turns.try_take().is_none());
        let turn = waiter.await.unwrap();
        assert_eq!(turns.available(), 0);
        drop(turn);
        assert_eq!(turns.available(), 1);
    }
}
