//! Helper threads that stay parked between jobs, so a fit or a large batch of scores can be shared
//! with the machine's other cores without starting a thread for it.
//!
//! Why not `thread::scope`: a thread started while the calling thread is busy runs only once the
//! scheduler moves it to an idle core. On the 2-core build machine that took 0.35–0.86 ms after the
//! spawn (four measurements, the spawning thread busy meanwhile), where a parked thread woken
//! through a condition variable was running after 2–16 µs. A default forest (100 trees, ψ = 256)
//! fits in about 0.6 ms on one core, so a freshly started helper arrived after the work was done.
//!
//! A job is *offered*, not assigned. The calling thread always works on the job itself, and the job
//! is a loop that claims pieces of work until none is left; idle helpers join in and claim pieces
//! too. When the caller runs out of pieces it withdraws the offer, so it never waits for a helper
//! that has not started: it waits only for helpers already inside the job, each finishing the piece
//! it claimed. On a busy machine the caller simply does all the pieces itself.
//!
//! A job with `threads` threads is offered to `threads` helpers, the caller working besides: a
//! woken helper sometimes lands on the caller's own core and runs in its place, and a second one
//! then still reaches the idle core. With one helper for two cores a default fit was no faster
//! (`score`, 25 runs on pima: median 0.92 ms against 0.84 ms on one thread, 3 runs faster). With
//! two, medians of 15 alternated runs went from 0.83 to 0.61 ms on pima, 0.93 to 0.73 on breastw,
//! 1.62 to 1.12 on musk, 0.75 to 0.61 on arrhythmia and 0.79 to 0.61 on cardio; scoring shuttle
//! from 17.5 to 15.9 ms and smtp from 42.6 to 30.9 ms (9 runs). So `threads` bounds the helpers, and
//! on a machine with more cores than `threads` the job may briefly use one more.
//!
//! The helpers are started on first use, or earlier by [`start`] (the `score` command starts them
//! before it reads its table, so they are parked and ready when the fit begins). The daemon scores
//! one series per call on one thread and never starts them.
//!
//! This is the crate's one module with `unsafe` code (the crate denies it elsewhere): a parked
//! thread can only run a borrowed closure if the borrow's lifetime is erased, as every scoped
//! thread pool does. `ErasedWork` states the invariant that makes it sound, and the tests below
//! check the two ways it could break (a caller returning, or unwinding, while a helper is inside).

#![allow(unsafe_code)]

use std::any::Any;
use std::num::NonZeroUsize;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

/// How long starting the pool waits for its helpers to run for the first time: a few scheduler
/// periods, so a machine too busy to run them does not hold up the command.
const STARTUP_WAIT: Duration = Duration::from_millis(50);

/// The machine's helpers: one per core (see the module's notes for why not one fewer).
static POOL: LazyLock<Pool> = LazyLock::new(|| Pool::new(super::available_threads().get()));

/// Starts the helper threads now, so that the first job finds them parked rather than starting.
pub fn start() {
    LazyLock::force(&POOL);
}

/// Runs `work` on the calling thread and, unless `threads` is 1, on up to `threads` idle helpers
/// (see the module's notes), and returns once every thread that entered it has returned. `work`
/// must be a claim loop: each call takes pieces of a shared job until none is left, so it does not
/// matter how many threads run it, or whether any helper does. A panic in `work` on any thread is
/// raised again here.
pub(super) fn share(threads: NonZeroUsize, work: &(dyn Fn() + Sync)) {
    if threads.get() == 1 {
        work();
    } else {
        POOL.share(threads.get(), work);
    }
}

/// Parked helper threads and the one job they may be offered.
struct Pool {
    shared: Arc<Shared>,
    helpers: usize,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled when a job is offered.
    offered: Condvar,
    /// Signalled when the last helper inside a job leaves it, and when a helper has started.
    emptied: Condvar,
}

#[derive(Default)]
struct State {
    /// The job on offer, while its caller still has work for helpers.
    offer: Option<Offer>,
    /// Numbers the offers, so that a helper joins each job at most once.
    offers_made: u64,
    /// Helpers inside the current job (they hold its pointer).
    inside: usize,
    /// The first panic a helper caught inside the current job.
    panic: Option<Box<dyn Any + Send>>,
    /// Helpers that have started and reached their first wait.
    started: usize,
    /// Set when the pool is dropped: the helpers return.
    closing: bool,
}

struct Offer {
    work: ErasedWork,
    /// Helpers that may still join.
    seats: usize,
    number: u64,
}

/// A job's work with its lifetime erased, so that a helper thread can hold it.
///
/// SAFETY (the invariant the pool keeps): a helper copies this pointer only while the offer is up,
/// and calls it only while it is counted in `State::inside`; both happen under the state's lock.
/// [`Pool::share`] withdraws the offer and then waits for `inside` to reach zero before it returns,
/// so the closure it borrowed outlives every call through the pointer.
#[derive(Clone, Copy)]
struct ErasedWork(*const (dyn Fn() + Sync + 'static));

// SAFETY: the pointee is `Sync`, so calling it from another thread is sound; the pointer's validity
// is the invariant above.
unsafe impl Send for ErasedWork {}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A helper catches panics from the work, so the lock is never poisoned while its state is
        // half-updated; take it back either way.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A helper's life: wait for an offer with a free seat, run its work, leave, wait again.
    fn serve(&self) {
        let mut last_joined = 0;
        let mut state = self.lock();
        state.started += 1;
        self.emptied.notify_all();
        while !state.closing {
            let joinable = state.offer.as_mut().filter(|offer| offer.number != last_joined && offer.seats > 0);
            let Some(offer) = joinable else {
                state = self.offered.wait(state).unwrap_or_else(PoisonError::into_inner);
                continue;
            };
            offer.seats -= 1;
            last_joined = offer.number;
            let work = offer.work;
            state.inside += 1;
            drop(state);
            // SAFETY: this helper is counted in `inside`, so the caller is still waiting in `share`
            // and the closure is alive (see `ErasedWork`).
            let outcome = panic::catch_unwind(AssertUnwindSafe(|| unsafe { (*work.0)() }));
            state = self.lock();
            state.inside -= 1;
            if let Err(payload) = outcome {
                state.panic.get_or_insert(payload);
            }
            if state.inside == 0 {
                self.emptied.notify_all();
            }
        }
    }
}

impl Pool {
    fn new(helpers: usize) -> Self {
        let shared = Arc::new(Shared { state: Mutex::default(), offered: Condvar::new(), emptied: Condvar::new() });
        let spawned = (0..helpers)
            .map_while(|index| {
                let shared = Arc::clone(&shared);
                // A machine that refuses another thread still has the calling one.
                let spawned =
                    thread::Builder::new().name(format!("forest-helper-{index}")).spawn(move || shared.serve());
                spawned.ok()
            })
            .count();
        // Wait (briefly) for the helpers to start. Linux puts a new thread on its parent's core, where
        // it does not run while the parent is busy (measured: 1.5 ms late behind a busy parent); once
        // it has run and parked, a wake-up can place it on an idle core.
        let deadline = Instant::now() + STARTUP_WAIT;
        let mut state = shared.lock();
        while state.started < spawned {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else { break };
            state = shared.emptied.wait_timeout(state, left).unwrap_or_else(PoisonError::into_inner).0;
        }
        drop(state);
        Self { shared, helpers: spawned }
    }

    fn share(&self, helpers_wanted: usize, work: &(dyn Fn() + Sync)) {
        let seats = helpers_wanted.min(self.helpers);
        if seats == 0 || !self.offer(seats, work) {
            work();
            return;
        }
        // Withdraws the offer and waits for the helpers inside, also when `work` panics here.
        let withdraw = Withdraw(&self.shared);
        work();
        drop(withdraw);
        if let Some(payload) = self.shared.lock().panic.take() {
            panic::resume_unwind(payload);
        }
    }

    /// Puts `work` on offer for `seats` helpers; false when another caller's job is using them (the
    /// caller then works alone rather than queue behind it).
    fn offer(&self, seats: usize, work: &(dyn Fn() + Sync)) -> bool {
        let mut state = self.shared.lock();
        if state.offer.is_some() || state.inside > 0 {
            return false;
        }
        state.offers_made += 1;
        // A helper's panic from a job whose caller unwound with its own panic was never taken.
        state.panic = None;
        let borrowed: *const (dyn Fn() + Sync + '_) = work;
        // SAFETY: only the trait object's lifetime bound changes (the same fat pointer); the
        // `ErasedWork` invariant keeps every use of it within this borrow.
        let erased = unsafe {
            std::mem::transmute::<*const (dyn Fn() + Sync + '_), *const (dyn Fn() + Sync + 'static)>(borrowed)
        };
        state.offer = Some(Offer { work: ErasedWork(erased), seats, number: state.offers_made });
        drop(state);
        self.shared.offered.notify_all();
        true
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Only pools made for tests are dropped; the machine's pool lives as long as the process.
        self.shared.lock().closing = true;
        self.shared.offered.notify_all();
    }
}

/// Ends an offer when dropped: no helper may join any more, and those inside are waited for.
struct Withdraw<'a>(&'a Shared);

impl Drop for Withdraw<'_> {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.offer = None;
        while state.inside > 0 {
            state = self.0.emptied.wait(state).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use super::*;

    fn threads(count: usize) -> NonZeroUsize {
        NonZeroUsize::new(count).unwrap()
    }

    /// A claim loop over `pieces` pieces that records which thread took each.
    fn run_pieces(pool: &Pool, helpers: usize, pieces: usize, piece_time: Duration) -> Vec<thread::ThreadId> {
        let next = AtomicUsize::new(0);
        let takers = Mutex::new(vec![None; pieces]);
        pool.share(helpers, &|| {
            loop {
                let piece = next.fetch_add(1, Ordering::Relaxed);
                if piece >= pieces {
                    return;
                }
                thread::sleep(piece_time);
                takers.lock().unwrap()[piece] = Some(thread::current().id());
            }
        });
        takers.into_inner().unwrap().into_iter().map(|taker| taker.expect("a piece nobody took")).collect()
    }

    /// Waits (up to a generous bound, for a loaded machine) until `flag` is set; true if it was.
    fn wait_for(flag: &AtomicBool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !flag.load(Ordering::Acquire) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(1));
        }
        flag.load(Ordering::Acquire)
    }

    #[test]
    fn a_parked_helper_joins_the_callers_job() {
        let pool = Pool::new(3);
        assert_eq!(pool.helpers, 3);
        let caller = thread::current().id();
        let helper_joined = AtomicBool::new(false);
        let calls = AtomicUsize::new(0);
        pool.share(3, &|| {
            calls.fetch_add(1, Ordering::Relaxed);
            if thread::current().id() == caller {
                // The caller leaves the work to a helper, so the test sees one join in.
                assert!(wait_for(&helper_joined), "no parked helper joined the job");
            } else {
                helper_joined.store(true, Ordering::Release);
            }
        });
        // The caller and at most the three helpers, each once.
        assert!((2..=4).contains(&calls.into_inner()));
        // Every piece of a claim loop is done once, whoever takes it.
        let takers = run_pieces(&pool, 3, 40, Duration::from_micros(200));
        assert_eq!(takers.len(), 40);
    }

    #[test]
    fn helpers_beyond_the_seats_stay_out() {
        let pool = Pool::new(3);
        for _ in 0..5 {
            let takers = run_pieces(&pool, 1, 30, Duration::from_millis(1));
            assert!(takers.iter().collect::<HashSet<_>>().len() <= 2);
        }
    }

    #[test]
    fn one_thread_or_no_helper_works_on_the_calling_thread_alone() {
        let me = thread::current().id();
        let takers = run_pieces(&Pool::new(0), 4, 10, Duration::ZERO);
        assert!(takers.iter().all(|&taker| taker == me));
        let calls = AtomicUsize::new(0);
        share(threads(1), &|| {
            calls.fetch_add(1, Ordering::Relaxed);
            assert_eq!(thread::current().id(), me);
        });
        assert_eq!(calls.into_inner(), 1);
    }

    #[test]
    fn callers_at_the_same_time_all_finish_their_own_job() {
        let pool = Pool::new(1);
        thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..20 {
                        assert_eq!(run_pieces(&pool, 1, 16, Duration::from_micros(50)).len(), 16);
                    }
                });
            }
        });
    }

    /// Shares one job on a one-helper pool: the calling thread runs `caller`, the helper that
    /// joins runs `helper`. Returns how `share` ended.
    fn share_split(pool: &Pool, caller: impl Fn() + Sync, helper: impl Fn() + Sync) -> thread::Result<()> {
        let caller_id = thread::current().id();
        panic::catch_unwind(AssertUnwindSafe(|| {
            pool.share(1, &|| if thread::current().id() == caller_id { caller() } else { helper() });
        }))
    }

    #[test]
    fn a_helpers_panic_reaches_the_caller_and_the_pool_keeps_working() {
        let pool = Pool::new(1);
        let helper_entered = AtomicBool::new(false);
        let outcome = share_split(
            &pool,
            || assert!(wait_for(&helper_entered), "the helper never joined"),
            || {
                helper_entered.store(true, Ordering::Release);
                panic!("helper failed");
            },
        );
        let message = outcome.expect_err("the helper's panic was lost");
        assert_eq!(message.downcast_ref::<&str>(), Some(&"helper failed"));
        assert_eq!(run_pieces(&pool, 1, 8, Duration::ZERO).len(), 8);
    }

    #[test]
    fn a_helpers_panic_under_a_caller_that_panicked_too_does_not_reach_the_next_job() {
        let pool = Pool::new(1);
        let helper_panicked = AtomicBool::new(false);
        let outcome = share_split(
            &pool,
            || {
                assert!(wait_for(&helper_panicked), "the helper never joined");
                panic!("caller failed");
            },
            || {
                helper_panicked.store(true, Ordering::Release);
                panic!("helper failed");
            },
        );
        assert_eq!(outcome.expect_err("no panic").downcast_ref::<&str>(), Some(&"caller failed"));
        // The next job's caller must not inherit the helper's panic.
        assert_eq!(run_pieces(&pool, 1, 8, Duration::from_micros(100)).len(), 8);
    }

    #[test]
    fn the_callers_panic_waits_for_the_helpers_inside() {
        let pool = Pool::new(1);
        let (helper_entered, helper_left) = (AtomicBool::new(false), AtomicBool::new(false));
        let outcome = share_split(
            &pool,
            || {
                assert!(wait_for(&helper_entered), "the helper never joined");
                panic!("caller failed");
            },
            || {
                helper_entered.store(true, Ordering::Release);
                thread::sleep(Duration::from_millis(30));
                helper_left.store(true, Ordering::Release);
            },
        );
        assert!(outcome.is_err());
        // `share` unwound only once the helper had left the closure it borrowed.
        assert!(helper_left.load(Ordering::Acquire));
    }
}
