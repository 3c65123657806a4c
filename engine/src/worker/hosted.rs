//! A task a worker runs between its passes, on a small tokio runtime: the Redis backplane,
//! hosted by worker 0 (see [`Mailboxes::host`](super::Mailboxes::host)), with a helper
//! thread that takes it over while the worker is busy.
//!
//! Why on a worker: a message from Redis that arrives alone (a few thousand a second) cost a
//! wake-up of a backplane thread to read it and another of the worker to write it. Read on
//! the worker that owns the target socket, it costs one. The worker waits in the runtime,
//! not in its `mio::Poll`: the poll's epoll descriptor is registered with the runtime's (an
//! epoll is itself pollable), so the wait ends when one of the worker's sockets or its
//! waker is ready, when the task's Redis connections are, or at the worker's timeout.
//!
//! Why the helper: Redis does not wait for a slow subscriber, it drops it (and what it
//! had buffered) once its output for it passes a limit (32 MiB by default). A worker busy
//! writing a burst reads Redis only between its passes, so after a pass that handled many
//! commands ([`BUSY_PASS`]) it hands the task to the helper, which reads Redis in parallel
//! as a thread of its own would; the worker takes the task back once it is idle again.
//!
//! Why carried passes: a lone message for an id of another worker still cost that worker a
//! wake-up. The task leaves such a wake-up to the end of its turn ([`deferred_by_host`]);
//! then, if the other worker sleeps with a few commands queued, this thread runs that
//! worker's pass itself under the worker's lock ([`Worker::carry`](super::Worker::carry)):
//! the write is made where the message was read. A burst still wakes each worker, so that
//! every worker writes its own sockets in parallel.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};
use std::thread::{JoinHandle, Thread};
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::runtime::Runtime;

use super::event_loop::CARRIED_COMMANDS;
use super::Mailboxes;

/// The hosted future.
pub(crate) type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A task for a worker to host, with its runtime.
pub(crate) struct HostedTask {
    pub runtime: Runtime,
    pub task: Task,
}

/// A pass that handled at least this many commands hands the task to the helper. A lone
/// message is a pass of one; a burst read from Redis is thousands.
pub(super) const BUSY_PASS: usize = 512;

thread_local! {
    /// The worker whose hosted task runs on this thread right now.
    static HOSTING: Cell<Option<usize>> = const { Cell::new(None) };
    /// The hosted task queued commands for the worker hosting it.
    static OWN_WORK: Cell<bool> = const { Cell::new(false) };
    /// The other workers (by bit) the hosted task queued a few commands for and would
    /// have woken: woken, or their pass carried, once the task's turn ends.
    static DEFERRED: Cell<u64> = const { Cell::new(0) };
}

/// Called by a sender that queued a command for `worker`, which has `queued` commands now,
/// and would wake it: true if the wake-up is left to the thread hosting a task, which is
/// the sender. For its own worker, the wait then ends without a wake-up (a write to the
/// waker and a turn of both polls, per message from Redis). For another worker with a
/// short queue, the wait ends after the task's turn and the thread carries the worker's
/// pass, or wakes it ([`Mailboxes::carry_or_wake`](super::Mailboxes::carry_or_wake)).
pub(super) fn deferred_by_host(worker: usize, queued: usize) -> bool {
    let Some(host) = HOSTING.get() else { return false };
    if host == worker {
        OWN_WORK.set(true);
        return true;
    }
    let Some(bit) = deferred_bit(worker).filter(|_| queued <= CARRIED_COMMANDS) else { return false };
    DEFERRED.set(DEFERRED.get() | bit);
    true
}

/// `worker`'s bit in [`DEFERRED`]; `None` past its 64 bits (such a worker is woken at once).
fn deferred_bit(worker: usize) -> Option<u64> {
    u32::try_from(worker).ok().and_then(|shift| 1u64.checked_shl(shift))
}

/// Called by a sender that queued another command for `worker` (its wake-up already made or
/// left): true if this thread left the wake-up and `queued()` has outgrown a carried pass.
/// The wake-up is then due now, not at the end of the task's turn: in a burst read from
/// Redis the turn lasts as long as Redis writes, and the worker must start at once.
pub(super) fn deferred_outgrown(worker: usize, queued: impl FnOnce() -> usize) -> bool {
    let Some(bit) = deferred_bit(worker) else { return false };
    let deferred = DEFERRED.get();
    if deferred & bit == 0 || queued() <= CARRIED_COMMANDS {
        return false;
    }
    DEFERRED.set(deferred & !bit);
    true
}

/// Who runs the task.
const WORKER: u8 = 0;
const HELPER: u8 = 1;
/// The worker asked the helper to give the task back.
const RELEASING: u8 = 2;
/// The task has ended (or the helper is told to exit).
const ENDED: u8 = 3;

/// What the worker and its helper share.
struct Baton {
    state: AtomicU8,
    /// `None` once the task has ended.
    task: Mutex<Option<Task>>,
    /// The helper's runtime waker while it runs the task, to make it give the task back.
    helper_waker: Mutex<Option<Waker>>,
}

impl Baton {
    fn task(&self) -> MutexGuard<'_, Option<Task>> {
        self.task.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wake_helper_runtime(&self) {
        if let Some(waker) = self.helper_waker.lock().unwrap_or_else(|e| e.into_inner()).take() {
            waker.wake();
        }
    }
}

/// Why a wait in the runtime ended.
#[derive(PartialEq, Eq)]
enum Woke {
    /// The task ended.
    Ended,
    /// The worker's poll may have events (or the timeout passed).
    Poll,
    /// The task queued commands for its own worker: nothing for the poll.
    Commands,
    /// The task only left wake-ups of other workers.
    Deferred,
}

/// A hosted task, on the worker's side.
pub(super) struct Hosted {
    runtime: Arc<Runtime>,
    baton: Arc<Baton>,
    /// A descriptor of the worker's poll (a duplicate: it lives as long as this does);
    /// `None` if it could not be registered with the runtime: the helper then runs the task.
    poll: Option<AsyncFd<OwnedFd>>,
    /// `None` if it could not be started: the worker then keeps the task however busy.
    helper: Option<JoinHandle<()>>,
    /// The way to the other workers, for the wake-ups the task leaves to the end of its turn.
    mailboxes: Mailboxes,
}

impl Hosted {
    /// Starts hosting `task` on this thread (worker `worker`'s), waking it also for what
    /// `poll` (the worker's) has ready.
    ///
    /// # Errors
    ///
    /// When the task can run nowhere: neither can the worker wait on `poll` in the task's
    /// runtime nor can the helper thread start. One of the two is enough (logged).
    pub fn start(
        task: HostedTask,
        poll: &mio::Poll,
        worker: usize,
        mailboxes: Mailboxes,
    ) -> io::Result<Self> {
        let poll = register(&task.runtime, poll)
            .map_err(|e| tracing::error!(worker, error = %e, "cannot wait on a worker's poll and its task together; the helper thread runs the task"))
            .ok();
        Self::with_poll(task, poll, worker, mailboxes)
    }

    fn with_poll(
        task: HostedTask,
        poll: Option<AsyncFd<OwnedFd>>,
        worker: usize,
        mailboxes: Mailboxes,
    ) -> io::Result<Self> {
        let HostedTask { runtime, task } = task;
        let runtime = Arc::new(runtime);
        let baton = Arc::new(Baton {
            state: AtomicU8::new(if poll.is_some() { WORKER } else { HELPER }),
            task: Mutex::new(Some(task)),
            helper_waker: Mutex::new(None),
        });
        let (helper_runtime, helper_baton, owner) = (runtime.clone(), baton.clone(), std::thread::current());
        let helper = match std::thread::Builder::new()
            .name(format!("wspush-host-{worker}"))
            .spawn(move || run_helper(&helper_runtime, &helper_baton, &owner))
        {
            Ok(helper) => Some(helper),
            Err(e) if poll.is_some() => {
                tracing::error!(worker, error = %e, "cannot start a worker's helper thread; the worker keeps its task");
                None
            }
            Err(e) => return Err(e),
        };
        Ok(Self { runtime, baton, poll, helper, mailboxes })
    }

    /// Waits for the worker's next pass in the runtime, running the task, if this worker
    /// holds it: until the worker has something to do or `timeout` has passed; with a zero
    /// timeout, for one turn of the task's I/O and timers. Returns whether the worker's poll
    /// may have events, or `None` if the worker does not hold the task (it then waits in its
    /// own poll). An idle worker (a nonzero `timeout`) takes the task back from the helper.
    pub fn wait(&mut self, timeout: Duration, worker: usize) -> Option<bool> {
        match self.baton.state.load(Ordering::Acquire) {
            HELPER if !timeout.is_zero() && self.poll.is_some() => {
                self.take_back();
                if self.baton.state.load(Ordering::Acquire) != WORKER {
                    return None;
                }
            }
            WORKER => {}
            _ => return None,
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let woke = self.turn(deadline, timeout.is_zero(), worker)?;
            let mut deferred = DEFERRED.take();
            while deferred != 0 {
                self.mailboxes.carry_or_wake(deferred.trailing_zeros() as usize);
                deferred &= deferred - 1;
            }
            match woke {
                // Only other workers' wake-ups, now carried or made: nothing for this one,
                // which waits on (a worker's pass costs more than the carried one).
                Woke::Deferred if !timeout.is_zero() => continue,
                Woke::Deferred | Woke::Commands => return Some(false),
                Woke::Poll | Woke::Ended => return Some(true),
            }
        }
    }

    /// Runs the task in the runtime until the wait has a reason to end (see [`Woke`]), or
    /// `deadline`; with `once`, for one turn of the task's I/O and timers.
    fn turn(&mut self, deadline: tokio::time::Instant, once: bool, worker: usize) -> Option<Woke> {
        let Self { runtime, baton, poll, .. } = self;
        let poll = poll.as_ref()?;
        let mut slot = baton.task();
        let task = slot.as_mut()?;
        HOSTING.set(Some(worker));
        let woke = runtime.block_on(async {
            let mut sleep = pin!(tokio::time::sleep_until(deadline));
            // Yielding has the runtime poll its I/O and timers once before it ends.
            let mut yielded = pin!(tokio::task::yield_now());
            std::future::poll_fn(|cx| {
                if task.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Woke::Ended);
                }
                if let Poll::Ready(ready) = poll.poll_read_ready(cx) {
                    // Cleared before the worker polls: what becomes ready from then on is a
                    // new edge, which the next wait sees.
                    if let Ok(mut ready) = ready {
                        ready.clear_ready();
                    }
                    return Poll::Ready(Woke::Poll);
                }
                if OWN_WORK.take() {
                    return Poll::Ready(Woke::Commands);
                }
                if DEFERRED.get() != 0 {
                    return Poll::Ready(Woke::Deferred);
                }
                let turned = if once { yielded.as_mut().poll(cx) } else { sleep.as_mut().poll(cx) };
                turned.map(|()| Woke::Poll)
            })
            .await
        });
        HOSTING.set(None);
        // The worker drains its queue after any wait.
        OWN_WORK.set(false);
        if woke == Woke::Ended {
            *slot = None;
            baton.state.store(ENDED, Ordering::Release);
        }
        Some(woke)
    }

    /// After a pass that handled `handled` commands: a busy worker hands the task to its
    /// helper, which reads Redis while the worker writes.
    pub fn after_pass(&self, handled: usize) {
        if handled < BUSY_PASS {
            return;
        }
        let Some(helper) = &self.helper else { return };
        if self.baton.state.compare_exchange(WORKER, HELPER, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            helper.thread().unpark();
        }
    }

    /// Asks the helper for the task and waits (briefly: until the helper's current turn of
    /// the task ends) until it is back.
    fn take_back(&self) {
        if self.baton.state.compare_exchange(HELPER, RELEASING, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            self.baton.wake_helper_runtime();
        }
        while self.baton.state.load(Ordering::Acquire) == RELEASING {
            std::thread::park_timeout(Duration::from_millis(1));
        }
    }

    /// Runs the task to its end (the worker has stopped; the task ends when told to), then
    /// stops the helper.
    pub fn finish(mut self) {
        self.take_back();
        if let Some(task) = self.baton.task().take() {
            self.runtime.block_on(task);
        }
        self.baton.state.store(ENDED, Ordering::Release);
        if let Some(helper) = self.helper.take() {
            helper.thread().unpark();
            if helper.join().is_err() {
                tracing::error!("a worker's helper thread panicked");
            }
        }
    }
}

impl Drop for Hosted {
    /// Without [`Hosted::finish`] (a worker that panicked): the helper is told to exit, not
    /// waited for.
    fn drop(&mut self) {
        if let Some(helper) = self.helper.take() {
            self.baton.state.store(ENDED, Ordering::Release);
            self.baton.wake_helper_runtime();
            helper.thread().unpark();
        }
    }
}

/// `poll`'s epoll descriptor, registered with `runtime`'s reactor: readable when one of the
/// poll's sources is ready.
fn register(runtime: &Runtime, poll: &mio::Poll) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: `poll` is borrowed, so its descriptor stays open through this statement.
    let poll_fd = unsafe { BorrowedFd::borrow_raw(poll.as_raw_fd()) }.try_clone_to_owned()?;
    let _entered = runtime.enter();
    // SAFETY: the `OwnedFd` is open until the `AsyncFd` that owns it is dropped, and always
    // returns the same descriptor.
    unsafe { AsyncFd::register_with_interest(poll_fd, Interest::READABLE) }.map_err(io::Error::from)
}

/// The helper thread: runs the task while the worker has handed it over, gives it back when
/// asked, and ends with the task.
fn run_helper(runtime: &Runtime, baton: &Baton, owner: &Thread) {
    loop {
        match baton.state.load(Ordering::Acquire) {
            ENDED => return,
            HELPER | RELEASING => {}
            _ => {
                std::thread::park();
                continue;
            }
        }
        let ended = runtime.block_on(std::future::poll_fn(|cx| {
            // Registered before the state is read: a request made after the read wakes it.
            *baton.helper_waker.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
            if baton.state.load(Ordering::Acquire) != HELPER {
                return Poll::Ready(false);
            }
            let mut slot = baton.task();
            let pending = slot.as_mut().is_some_and(|task| task.as_mut().poll(cx).is_pending());
            if pending {
                return Poll::Pending;
            }
            *slot = None;
            Poll::Ready(true)
        }));
        let next = if ended { ENDED } else { WORKER };
        // Only a hand-back request or the end leave the loop above; the worker may have
        // marked the end meanwhile (its `finish`), which stands.
        let _ = baton.state.compare_exchange(RELEASING, next, Ordering::AcqRel, Ordering::Acquire);
        if ended {
            baton.state.store(ENDED, Ordering::Release);
        }
        owner.unpark();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::sync::mpsc;
    use std::time::Instant;

    use super::*;

    const LONG: Duration = Duration::from_secs(10);

    fn runtime() -> Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    }

    /// The mailboxes of an engine without workers: these tests defer no wake-up of another
    /// worker (the engine's tests carry passes for real ones).
    fn no_workers() -> Mailboxes {
        Mailboxes::new(Vec::new())
    }

    fn this_thread() -> String {
        std::thread::current().name().unwrap_or("").to_owned()
    }

    /// Waits until the task reports running on `thread`.
    fn seen_on(names: &mpsc::Receiver<String>, thread: &str) {
        let deadline = Instant::now() + LONG;
        while let Ok(name) = names.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            if name == thread {
                return;
            }
        }
        panic!("the task did not run on {thread}");
    }

    #[test]
    fn a_busy_worker_hands_its_task_to_the_helper_and_takes_it_back_when_idle() {
        let (names, seen) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let task = Box::pin(async move {
            while !stopped.load(Ordering::Relaxed) {
                let _ = names.send(this_thread());
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        let poll = mio::Poll::new().unwrap();
        let mut hosted =
            Hosted::start(HostedTask { runtime: runtime(), task }, &poll, 0, no_workers()).unwrap();
        assert_eq!(hosted.wait(Duration::from_millis(5), 0), Some(true));
        seen_on(&seen, &this_thread());

        hosted.after_pass(BUSY_PASS - 1);
        assert_eq!(hosted.baton.state.load(Ordering::Acquire), WORKER, "a small pass keeps the task");
        hosted.after_pass(BUSY_PASS);
        seen_on(&seen, "wspush-host-0");
        assert_eq!(hosted.wait(Duration::ZERO, 0), None, "a busy worker leaves the task to the helper");

        // Idle: the worker takes the task back and runs it again.
        assert!(hosted.wait(Duration::from_millis(5), 0).is_some());
        assert_eq!(hosted.baton.state.load(Ordering::Acquire), WORKER);
        while seen.try_recv().is_ok() {}
        assert!(hosted.wait(Duration::from_millis(5), 0).is_some());
        seen_on(&seen, &this_thread());

        stop.store(true, Ordering::Relaxed);
        hosted.finish();
    }

    #[test]
    fn a_task_that_ends_on_the_helper_ends_for_the_worker_too() {
        let (go, gone) = mpsc::channel::<()>();
        let gone = Arc::new(Mutex::new(gone));
        let task = Box::pin(async move {
            // Ends once told to, wherever it runs.
            while gone.lock().unwrap().try_recv().is_err() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        let poll = mio::Poll::new().unwrap();
        let mut hosted =
            Hosted::start(HostedTask { runtime: runtime(), task }, &poll, 0, no_workers()).unwrap();
        hosted.after_pass(BUSY_PASS);
        go.send(()).unwrap();
        let deadline = Instant::now() + LONG;
        while hosted.baton.state.load(Ordering::Acquire) != ENDED {
            assert!(Instant::now() < deadline, "the task did not end");
            std::thread::yield_now();
        }
        assert_eq!(hosted.wait(Duration::from_millis(5), 0), None);
        hosted.finish();
    }

    #[test]
    fn commands_the_task_queues_for_its_own_worker_end_the_wait_without_the_poll() {
        let (queued, was_queued) = mpsc::channel();
        let task = Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            // As a delivery to worker 0, then to worker 1 with a long queue, from worker 0's task.
            let _ = queued.send((deferred_by_host(0, 1), deferred_by_host(1, CARRIED_COMMANDS + 1)));
            std::future::pending::<()>().await;
        });
        let poll = mio::Poll::new().unwrap();
        let mut hosted =
            Hosted::start(HostedTask { runtime: runtime(), task }, &poll, 0, no_workers()).unwrap();
        let started = Instant::now();
        assert_eq!(hosted.wait(LONG, 0), Some(false), "nothing for the poll");
        assert!(started.elapsed() < LONG / 2, "the wait ended at once");
        assert_eq!(
            was_queued.recv().unwrap(),
            (true, false),
            "the hosting worker skips the wake-up; another with a long queue is woken at once"
        );
        assert!(!deferred_by_host(0, 1), "outside a wait, a sender wakes the worker");
        assert!(!deferred_by_host(1, 1), "outside a wait, a sender wakes the worker");
    }

    #[test]
    fn a_left_wake_up_is_made_at_once_when_the_queue_outgrows_a_carried_pass() {
        let (queued, was_queued) = mpsc::channel();
        let task = Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            // A burst for worker 1 read by worker 0's task: the first command leaves the
            // wake-up, the ones up to a carried pass's size keep it left, the next one takes
            // it back (the sender wakes worker 1 now).
            let _ = queued.send((
                deferred_by_host(1, 1),
                deferred_outgrown(1, || CARRIED_COMMANDS),
                deferred_outgrown(1, || CARRIED_COMMANDS + 1),
                deferred_outgrown(1, || CARRIED_COMMANDS + 2),
            ));
            std::future::pending::<()>().await;
        });
        let poll = mio::Poll::new().unwrap();
        // Without workers: a wake-up still left at the end of the turn would be carried
        // through mailboxes that have no worker 1, and panic.
        let mut hosted =
            Hosted::start(HostedTask { runtime: runtime(), task }, &poll, 0, no_workers()).unwrap();
        let wait = hosted.wait(Duration::from_millis(50), 0);
        assert_eq!(was_queued.recv().unwrap(), (true, false, true, false), "woken once, when outgrown");
        assert_eq!(wait, Some(true), "nothing left: the wait ran to its timeout");
        assert!(!deferred_outgrown(1, || CARRIED_COMMANDS + 1), "outside a wait, nothing is left");
    }

    #[test]
    fn without_the_workers_poll_the_helper_runs_the_task_until_the_finish() {
        let (names, seen) = mpsc::channel();
        let (stop, stopped) = mpsc::channel::<()>();
        let stopped = Arc::new(Mutex::new(stopped));
        let task = Box::pin(async move {
            while stopped.lock().unwrap().try_recv().is_err() {
                let _ = names.send(this_thread());
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        let mut hosted =
            Hosted::with_poll(HostedTask { runtime: runtime(), task }, None, 0, no_workers()).unwrap();
        seen_on(&seen, "wspush-host-0");
        assert_eq!(hosted.wait(Duration::from_millis(5), 0), None, "an idle worker does not take it back");
        seen_on(&seen, "wspush-host-0");
        // The finish takes the task back and runs it to its end.
        stop.send(()).unwrap();
        hosted.finish();
    }

    #[test]
    fn the_wait_ends_when_the_workers_poll_has_events() {
        let task = Box::pin(std::future::pending::<()>());
        let poll = mio::Poll::new().unwrap();
        let waker = mio::Waker::new(poll.registry(), mio::Token(0)).unwrap();
        let mut hosted =
            Hosted::start(HostedTask { runtime: runtime(), task }, &poll, 0, no_workers()).unwrap();
        std::thread::scope(|scope| {
            scope.spawn(|| waker.wake().unwrap());
            let started = Instant::now();
            assert_eq!(hosted.wait(LONG, 0), Some(true));
            assert!(started.elapsed() < LONG / 2, "the wait ended at once");
        });
    }
}
