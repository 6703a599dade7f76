//! The tasks that drive a node's established channel ends: a small fixed set of driver tasks ("shards"), one
//! per tokio worker thread of the runtime the node's first channel was made in (at least one), instead of one
//! tokio task per channel end.
//!
//! Each shard is one tokio task that owns its channel ends and polls only those that were woken, as
//! `FuturesUnordered` does:
//!
//! * every end lives in one shared cell (`End`): its future, its slot index in the shard and a "queued" flag.
//!   The cell is its own [`Waker`] (`std::task::Wake`): waking it pushes the slot index onto the shard's
//!   ready queue (once until it is polled again) and, when that queue was empty, wakes the shard task. The
//!   end's mailboxes and its timer slot keep that waker, so an idle end costs the shard nothing;
//! * new ends arrive through the shard's intake queue and are polled once when taken in;
//! * an end whose future returns `Ready` is removed and its slot reused; a stale waker of a removed end can
//!   at worst cause one spurious poll of the end that reuses the slot, which futures tolerate;
//! * a shard polls at most [`BUDGET`] ready ends per poll, then yields to the runtime (it wakes itself), so
//!   one busy channel cannot starve the others or the node's transports. Ends woken while a batch runs wait
//!   for the next batch: every ready end is polled once per round, in turn;
//! * a panic in one end's poll removes that end only (it is logged), not the shard's other ends.
//!
//! New ends go to the shard holding the fewest. A shard task ends when its node is gone (its intake closed)
//! and it holds no ends; if its tokio runtime shuts down first, the task is dropped with the ends it holds
//! (as their own tasks would have been) and the next end added starts a new shard task in the runtime it is
//! added from.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Wake, Waker};
use tokio::sync::Notify;

/// The drivers of a node's channel ends.
pub(crate) type ChannelDrivers = Drivers<super::worker::ChannelTask>;

/// Most ready ends a shard polls before it yields to the runtime.
pub(crate) const BUDGET: usize = 32;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock only means a panic elsewhere while holding it; what it guards stays consistent (each
    // critical section here is a push, a take or a swap).
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a node's channel drivers hold and have done (see [`crate::Node::driver_stats`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DriverStats {
    /// Shards (driver tasks) of the node: fixed when its first channel end was added (0 before).
    pub shards: usize,
    /// Shards whose task is running now.
    pub running: usize,
    /// Channel ends each shard holds now (including ends in its intake not yet taken in).
    pub ends: Vec<usize>,
    /// Polls of channel ends, in all.
    pub polls: u64,
    /// Times a shard yielded to the runtime with ready ends left over (its budget was used up, or ends were
    /// woken again during a batch).
    pub yields: u64,
    /// Channel ends removed because their poll panicked.
    pub panicked: u64,
}

impl DriverStats {
    /// Channel ends held by all the shards.
    pub fn total_ends(&self) -> usize {
        self.ends.iter().sum()
    }
}

/// The state one shard task shares with its node and with the wakers of its ends.
struct Shard<F> {
    /// Ends added and not yet taken in by the task.
    intake: Mutex<Vec<F>>,
    /// Slot indices of the ends woken since the task last took this queue.
    ready: Mutex<Vec<usize>>,
    /// Wakes the shard task (a new end, a woken end, the node gone).
    notify: Notify,
    /// Set when the node is gone: no end will be added any more.
    closed: AtomicBool,
    /// Whether a task runs for this shard (cleared when it ends or is dropped with its runtime).
    running: AtomicBool,
    /// Ends held, intake included.
    ends: AtomicUsize,
    polls: AtomicU64,
    yields: AtomicU64,
    panicked: AtomicU64,
}

impl<F> Shard<F> {
    fn new() -> Self {
        Shard {
            intake: Mutex::new(Vec::new()),
            ready: Mutex::new(Vec::new()),
            notify: Notify::new(),
            closed: AtomicBool::new(false),
            running: AtomicBool::new(false),
            ends: AtomicUsize::new(0),
            polls: AtomicU64::new(0),
            yields: AtomicU64::new(0),
            panicked: AtomicU64::new(0),
        }
    }
}

/// One channel end in its shard: the end's future and its waker in one allocation.
struct End<F> {
    index: usize,
    /// Set while the end's index is in the ready queue (or it is being taken in), so that many wake-ups
    /// before a poll queue it once.
    queued: AtomicBool,
    shard: Arc<Shard<F>>,
    /// Taken out (and dropped) when the end's future has returned `Ready`. Only the shard task locks it; the
    /// lock is what lets the wakers, which other threads hold, share the cell.
    future: Mutex<Option<F>>,
}

impl<F: Send + 'static> Wake for End<F> {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.queued.swap(true, Ordering::AcqRel) {
            return;
        }
        let was_empty = {
            let mut ready = lock(&self.shard.ready);
            ready.push(self.index);
            ready.len() == 1
        };
        // The task takes the whole queue at once: a push onto an empty queue is the one that must wake it
        // (a `Notify` keeps the wake-up if the task is not waiting yet).
        if was_empty {
            self.shard.notify.notify_one();
        }
    }
}

/// A node's channel drivers: its shards, made when the first end is added.
pub(crate) struct Drivers<F> {
    shards: OnceLock<Box<[Arc<Shard<F>>]>>,
    /// Breaks ties between equally loaded shards.
    next: AtomicUsize,
}

impl<F> Drivers<F>
where
    F: Future<Output = ()> + Unpin + Send + 'static,
{
    pub(crate) fn new() -> Self {
        Drivers {
            shards: OnceLock::new(),
            next: AtomicUsize::new(0),
        }
    }

    /// Hands a channel end to the least loaded shard, starting that shard's task in the current tokio
    /// runtime if none runs. Panics outside a tokio runtime, as `tokio::spawn` does.
    pub(crate) fn add(&self, end: F) {
        let shards = self.shards.get_or_init(|| {
            let n = tokio::runtime::Handle::current()
                .metrics()
                .num_workers()
                .max(1);
            (0..n).map(|_| Arc::new(Shard::new())).collect()
        });
        let start = self.next.fetch_add(1, Ordering::Relaxed) % shards.len();
        let shard = (0..shards.len())
            .map(|i| &shards[(start + i) % shards.len()])
            .min_by_key(|s| s.ends.load(Ordering::Relaxed))
            .expect("at least one shard");
        shard.ends.fetch_add(1, Ordering::Relaxed);
        lock(&shard.intake).push(end);
        shard.notify.notify_one();
        if !shard.running.swap(true, Ordering::AcqRel) {
            tokio::spawn(run(Owned::new(shard.clone())));
        }
    }

    /// The node is gone: each shard's task ends once it holds no ends.
    pub(crate) fn stop(&self) {
        for shard in self.all() {
            shard.closed.store(true, Ordering::Release);
            shard.notify.notify_one();
        }
    }

    fn all(&self) -> &[Arc<Shard<F>>] {
        self.shards.get().map_or(&[], |s| &s[..])
    }

    pub(crate) fn stats(&self) -> DriverStats {
        let mut stats = DriverStats::default();
        for shard in self.all() {
            stats.shards += 1;
            stats.running += usize::from(shard.running.load(Ordering::Acquire));
            stats.ends.push(shard.ends.load(Ordering::Relaxed));
            stats.polls += shard.polls.load(Ordering::Relaxed);
            stats.yields += shard.yields.load(Ordering::Relaxed);
            stats.panicked += shard.panicked.load(Ordering::Relaxed);
        }
        stats
    }
}

/// The ends a shard task owns. Dropping it (the task ends, or is dropped with its runtime) drops them and
/// what is left in the intake, and lets the next `add` start a new task.
struct Owned<F: Send + 'static> {
    shard: Arc<Shard<F>>,
    /// Each end with its waker, made once when the end is taken in (a poll clones neither).
    slots: Vec<Option<(Arc<End<F>>, Waker)>>,
    free: Vec<usize>,
    live: usize,
}

impl<F: Send + 'static> Drop for Owned<F> {
    fn drop(&mut self) {
        for (end, _) in self.slots.drain(..).flatten() {
            let future = lock(&end.future).take();
            drop(future);
        }
        // Cleared before the intake is drained: an end added after the drain finds no task and starts one.
        self.shard.running.store(false, Ordering::Release);
        let left = std::mem::take(&mut *lock(&self.shard.intake));
        self.shard
            .ends
            .fetch_sub(self.live + left.len(), Ordering::Relaxed);
        drop(left);
    }
}

impl<F> Owned<F>
where
    F: Future<Output = ()> + Unpin + Send + 'static,
{
    fn new(shard: Arc<Shard<F>>) -> Self {
        Owned {
            shard,
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
        }
    }

    /// Takes in the ends added since the last call; they are polled first.
    fn take_in(&mut self, batch: &mut VecDeque<usize>) {
        let added = std::mem::take(&mut *lock(&self.shard.intake));
        for future in added {
            let index = self.free.pop().unwrap_or(self.slots.len());
            let end = Arc::new(End {
                index,
                queued: AtomicBool::new(true),
                shard: self.shard.clone(),
                future: Mutex::new(Some(future)),
            });
            let waker = Waker::from(end.clone());
            if index == self.slots.len() {
                self.slots.push(Some((end, waker)));
            } else {
                self.slots[index] = Some((end, waker));
            }
            self.live += 1;
            batch.push_back(index);
        }
    }

    /// Polls the end in slot `index` once (if it is still there); removes it when it is done or panicked.
    fn poll_end(&mut self, index: usize) {
        let Some((end, waker)) = self.slots.get(index).and_then(Option::as_ref) else {
            return;
        };
        end.queued.store(false, Ordering::Release);
        let mut cx = Context::from_waker(waker);
        self.shard.polls.fetch_add(1, Ordering::Relaxed);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            match lock(&end.future).as_mut() {
                Some(future) => Pin::new(future).poll(&mut cx).is_ready(),
                None => true,
            }
        }));
        let done = match outcome {
            Ok(done) => done,
            Err(_) => {
                self.shard.panicked.fetch_add(1, Ordering::Relaxed);
                tracing::error!("a channel end panicked; it is removed from its driver");
                true
            }
        };
        if done {
            let future = lock(&end.future).take();
            // Dropped outside the lock: dropping an end may wake other ends of this shard.
            drop(future);
            self.slots[index] = None;
            self.free.push(index);
            self.live -= 1;
            self.shard.ends.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Returns `Pending` once after waking its own task: the task goes to the back of the runtime's queue.
async fn yield_to_runtime() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await
}

/// One shard's task. The ends it owns are in `owned` from the start, so that even a task dropped before its
/// first poll (spawned while its runtime shuts down) drops what was added and lets the next `add` start a
/// new task.
async fn run<F>(mut owned: Owned<F>)
where
    F: Future<Output = ()> + Unpin + Send + 'static,
{
    let shard = owned.shard.clone();
    // The ends of the current round: each polled once, in turn, at most `BUDGET` per poll of this task.
    let mut batch: VecDeque<usize> = VecDeque::new();
    let mut spare: Vec<usize> = Vec::new();
    loop {
        owned.take_in(&mut batch);
        if batch.is_empty() {
            // Swapped with a spare buffer, so that neither queue allocates in steady state.
            std::mem::swap(&mut *lock(&shard.ready), &mut spare);
            batch.extend(spare.drain(..));
        }
        for _ in 0..BUDGET {
            let Some(index) = batch.pop_front() else {
                break;
            };
            owned.poll_end(index);
        }
        if owned.live == 0 && owned.slots.len() > 64 {
            // Every end is gone: give back the slot table of a burst.
            owned.slots = Vec::new();
            owned.free = Vec::new();
        }
        if !batch.is_empty() || !lock(&shard.ready).is_empty() {
            shard.yields.fetch_add(1, Ordering::Relaxed);
            yield_to_runtime().await;
            continue;
        }
        if shard.closed.load(Ordering::Acquire) && owned.live == 0 && lock(&shard.intake).is_empty()
        {
            return;
        }
        // Woken by an end pushed onto an empty ready queue, a new end, or the node going away; a wake-up
        // given before this wait is kept by the `Notify`.
        shard.notify.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// A future that counts its polls and finishes once `finish` is set (woken through the waker it stores).
    struct Probe {
        polls: Arc<AtomicUsize>,
        finish: Arc<AtomicBool>,
        waker: Arc<Mutex<Option<Waker>>>,
        /// Wakes itself on every poll (a busy end) until it finishes.
        busy: bool,
    }

    impl Future for Probe {
        type Output = ();
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.polls.fetch_add(1, Ordering::SeqCst);
            if self.finish.load(Ordering::SeqCst) {
                return Poll::Ready(());
            }
            *lock(&self.waker) = Some(cx.waker().clone());
            if self.busy {
                cx.waker().wake_by_ref();
            }
            Poll::Pending
        }
    }

    struct ProbeHandle {
        polls: Arc<AtomicUsize>,
        finish: Arc<AtomicBool>,
        waker: Arc<Mutex<Option<Waker>>>,
    }

    impl ProbeHandle {
        fn polls(&self) -> usize {
            self.polls.load(Ordering::SeqCst)
        }
        fn wake(&self) {
            if let Some(w) = lock(&self.waker).as_ref() {
                w.wake_by_ref();
            }
        }
        fn finish(&self) {
            self.finish.store(true, Ordering::SeqCst);
            self.wake();
        }
    }

    fn probe(busy: bool) -> (Probe, ProbeHandle) {
        let (polls, finish, waker) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicBool::new(false)),
            Arc::new(Mutex::new(None)),
        );
        (
            Probe {
                polls: polls.clone(),
                finish: finish.clone(),
                waker: waker.clone(),
                busy,
            },
            ProbeHandle {
                polls,
                finish,
                waker,
            },
        )
    }

    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn polls_only_woken_ends_and_removes_finished_ones() {
        let drivers = Drivers::new();
        let (a, ha) = probe(false);
        let (b, hb) = probe(false);
        drivers.add(a);
        drivers.add(b);
        settle().await;
        assert_eq!(
            (ha.polls(), hb.polls()),
            (1, 1),
            "each new end is polled once"
        );
        let stats = drivers.stats();
        assert_eq!((stats.shards, stats.running, stats.total_ends()), (1, 1, 2));
        // Waking one end polls that end only, once however often it was woken.
        ha.wake();
        ha.wake();
        ha.wake();
        settle().await;
        assert_eq!((ha.polls(), hb.polls()), (2, 1));
        // A finished end is removed and its slot reused.
        ha.finish();
        settle().await;
        assert_eq!(drivers.stats().total_ends(), 1);
        let (c, hc) = probe(false);
        drivers.add(c);
        settle().await;
        assert_eq!(hc.polls(), 1);
        assert_eq!(drivers.stats().total_ends(), 2);
        // The node goes away: the shard ends once its last end has.
        drivers.stop();
        settle().await;
        assert_eq!(drivers.stats().running, 1, "ends still held keep the shard");
        hb.finish();
        hc.finish();
        settle().await;
        let stats = drivers.stats();
        assert_eq!((stats.running, stats.total_ends()), (0, 0), "{stats:?}");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_busy_end_does_not_starve_the_others() {
        let drivers = Drivers::new();
        let (busy, hbusy) = probe(true);
        drivers.add(busy);
        let quiet: Vec<_> = (0..2 * BUDGET).map(|_| probe(false)).collect();
        let mut handles = Vec::new();
        for (p, h) in quiet {
            drivers.add(p);
            handles.push(h);
        }
        settle().await;
        // Each quiet end, woken while the busy one keeps waking itself, is polled within a round.
        for round in 0..5 {
            for h in &handles {
                h.wake();
            }
            let before: Vec<_> = handles.iter().map(ProbeHandle::polls).collect();
            settle().await;
            for (h, b) in handles.iter().zip(before) {
                assert!(h.polls() > b, "round {round}: a woken end was not polled");
            }
        }
        assert!(hbusy.polls() > 5, "the busy end runs too");
        assert!(drivers.stats().yields > 0);
        // The runtime gets its turn: this test task ran between the shard's batches all along.
        hbusy.finish();
        for h in &handles {
            h.finish();
        }
        settle().await;
        assert_eq!(drivers.stats().total_ends(), 0);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_panicking_end_is_removed_alone() {
        struct Boom;
        impl Future for Boom {
            type Output = ();
            fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
                panic!("boom (expected by the test)");
            }
        }
        let drivers: Drivers<Pin<Box<dyn Future<Output = ()> + Send>>> = Drivers::new();
        let (a, ha) = probe(false);
        drivers.add(Box::pin(a));
        drivers.add(Box::pin(Boom));
        settle().await;
        let stats = drivers.stats();
        assert_eq!((stats.panicked, stats.total_ends()), (1, 1), "{stats:?}");
        ha.wake();
        settle().await;
        assert_eq!(ha.polls(), 2, "the other end is still driven");
    }

    #[test]
    fn a_driver_task_dropped_before_its_first_poll_drops_its_intake() {
        // What a shard task spawned while its runtime shuts down sees: it is dropped unpolled.
        let shard = Arc::new(Shard::new());
        let (a, ha) = probe(false);
        shard.ends.fetch_add(1, Ordering::Relaxed);
        lock(&shard.intake).push(a);
        shard.running.store(true, Ordering::Release);
        drop(run(Owned::new(shard.clone())));
        assert!(
            !shard.running.load(Ordering::Acquire),
            "the next add starts a task"
        );
        assert_eq!(shard.ends.load(Ordering::Relaxed), 0);
        assert_eq!(Arc::strong_count(&ha.polls), 1, "the end was dropped");
    }

    #[test]
    fn ends_are_dropped_with_their_runtime_and_a_new_runtime_drives_new_ends() {
        let drivers = Drivers::new();
        let (a, ha) = probe(false);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            drivers.add(a);
            settle().await;
        });
        assert_eq!(ha.polls(), 1);
        drop(rt);
        let stats = drivers.stats();
        assert_eq!((stats.running, stats.total_ends()), (0, 0), "{stats:?}");
        assert!(
            Arc::strong_count(&ha.polls) == 1,
            "the end's future was dropped with its runtime"
        );
        let (b, hb) = probe(false);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            drivers.add(b);
            settle().await;
        });
        assert_eq!(hb.polls(), 1);
    }
}
