//! One timer service per node: the deadlines of all its channel ends in one queue, served by one task with one
//! tokio timer, instead of one tokio `Sleep` per channel end.
//!
//! Each channel end holds a [`Timer`]: a small shared slot with the deadline it wants now (`wanted`), the
//! deadline of its one live entry in the node's queue (`armed`), that entry's generation and the waker of the
//! channel task. The queue is a binary heap of `(deadline, generation, slot)` ordered by deadline, with lazy
//! cancellation:
//!
//! * **Re-arming** (every idle poll of a channel end) takes no lock when the task's waker has not changed: the
//!   slot's waker sits in a `Mutex<Option<Waker>>` written only by its `Timer` (through `&mut self`) and only
//!   read by the service (`wake_by_ref`, never taken out), so the timer keeps its own clone of the waker it
//!   stored last and, when the new one `will_wake` that clone, knows the slot already holds an equivalent waker
//!   and skips the lock (a compare, no clone, no atomic read-modify-write). Only a different waker locks the
//!   slot and is stored. The deadline is one atomic store (none if it did not change). Only a deadline
//!   *earlier* than the armed one takes the queue's lock and pushes a new entry (O(log n), into the heap's
//!   existing capacity: no allocation in steady state); the superseded entry stays in the heap and is
//!   recognised by its generation when it comes up, then dropped without waking anyone. A later deadline, or
//!   none, pushes nothing.
//! * **When an entry comes due** the service reads the slot's `wanted`: if it has passed, the channel task is
//!   woken (once); if it moved later meanwhile, the entry is re-queued at the new deadline without waking the
//!   channel; if the channel wants no timer, the entry is dropped. A channel is therefore woken only when its
//!   own deadline has passed, and each slot has at most one live entry: superseded deadlines cannot cause
//!   wake-up storms.
//! * **The heap is bounded by construction.** Call *live* the entries that are their slot's current one (at
//!   most one per slot, and none for a dropped channel end) and *superseded* the others. After every push, if
//!   the heap holds more than `max(2 × live, MIN_REBUILD)` entries it is rebuilt from the live entries alone
//!   (O(n), `BinaryHeap::retain`); the same check follows each service round and each dropped channel end (both
//!   lower `live`). So whenever the queue's lock is free,
//!   `entries ≤ max(2 × live, MIN_REBUILD) ≤ max(2 × slots, 64)`: a deadline that keeps moving earlier cannot
//!   grow the queue. A rebuild happens only when more than half of the heap is superseded, and each superseded
//!   entry was made by one push (or one dropped channel end), so its O(n) cost is paid for by at least n/2
//!   pushes since the previous one: amortised O(1) per push.
//!
//! Resolution: the sessions' clock ([`now`]), whole milliseconds; an entry fires at the first millisecond at or
//! after its deadline, as a tokio `Sleep` at the same instant would. The service sleeps until the earliest
//! entry (one tokio timer for the node) and is nudged when an earlier deadline is queued; it never wakes on a
//! fixed tick. A channel task decides for itself whether its deadline has passed (it compares the session's
//! `poll_timeout` with [`now`]): the service is only how it gets woken.

use latchkey_core::route::Instant as Tick;
use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::Waker;
use std::time::Duration;
use tokio::sync::Notify;

/// "No deadline" in a slot.
const NEVER: u64 = u64::MAX;

/// The heap is rebuilt from its live entries once it holds more than `max(2 × live, MIN_REBUILD)` entries (see
/// the module's documentation). The floor keeps a small queue from being rebuilt over and over.
const MIN_REBUILD: usize = 64;

/// The origin of the sessions' clock: the first time any channel asked for the time.
pub(crate) fn epoch() -> tokio::time::Instant {
    static EPOCH: OnceLock<tokio::time::Instant> = OnceLock::new();
    *EPOCH.get_or_init(tokio::time::Instant::now)
}

/// Now, on the sessions' clock (whole milliseconds since [`epoch`]).
pub(crate) fn now() -> Tick {
    let elapsed = tokio::time::Instant::now().duration_since(epoch());
    Tick::from_millis(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
}

/// The tokio instant of a tick on the sessions' clock.
pub(crate) fn instant_of(at: Tick) -> tokio::time::Instant {
    epoch() + Duration::from_millis(at.as_millis())
}

/// One channel end's place in the node's timer queue.
struct Slot {
    /// The deadline the channel wants now (milliseconds on the sessions' clock, or [`NEVER`]). Written only by
    /// the slot's [`Timer`].
    wanted: AtomicU64,
    /// The deadline of the slot's live entry in the queue, or [`NEVER`] if it has none. Changed only under the
    /// queue's lock.
    armed: AtomicU64,
    /// The generation of the live entry; older entries of this slot are stale. Changed only under the lock.
    generation: AtomicU64,
    /// The channel task to wake: written only by the slot's [`Timer`] (a new waker, or `None` when it is
    /// dropped); the service only reads it (`wake_by_ref`), never takes it out, so a timer that remembers what
    /// it stored last knows what the slot holds without locking it.
    waker: Mutex<Option<Waker>>,
}

impl Slot {
    fn waker(&self) -> MutexGuard<'_, Option<Waker>> {
        lock(&self.waker)
    }
}

struct Entry {
    at: u64,
    generation: u64,
    slot: Arc<Slot>,
}

impl Entry {
    /// Whether this is its slot's live entry (not superseded, not dropped).
    fn is_live(&self) -> bool {
        self.generation == self.slot.generation.load(Ordering::Relaxed)
            && self.slot.armed.load(Ordering::SeqCst) == self.at
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == CmpOrdering::Equal
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    /// Reversed, so that `BinaryHeap` (a max-heap) pops the earliest deadline first.
    fn cmp(&self, other: &Self) -> CmpOrdering {
        (other.at, other.generation).cmp(&(self.at, self.generation))
    }
}

struct Queue {
    heap: BinaryHeap<Entry>,
    /// Live entries in `heap`: slots whose `armed` is not [`NEVER`] (each has exactly one).
    live: usize,
    /// The deadline the service sleeps until ([`NEVER`] when the heap is empty): a push before it nudges the
    /// service.
    next_wake: u64,
}

/// What the node's timer service has done (see [`crate::Node::timer_stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimerStats {
    /// Channel ends holding a timer slot now.
    pub slots: usize,
    /// Entries in the queue, live and superseded: at most `max(2 × live entries, 64)`, so at most
    /// `max(2 × slots, 64)`.
    pub entries: usize,
    /// Times the service task woke (for a due entry or because an earlier deadline was queued).
    pub service_wakeups: u64,
    /// Channel tasks woken because their deadline had passed.
    pub fired: u64,
    /// Entries pushed (a new earliest deadline for a slot, or a deferred entry re-queued).
    pub pushed: u64,
    /// Entries that came due after their slot's deadline had moved later: re-queued, nobody woken.
    pub deferred: u64,
    /// Superseded entries dropped when they came up (generation check), nobody woken.
    pub stale: u64,
    /// Times the queue was rebuilt from its live entries because superseded ones had reached the bound.
    pub rebuilds: u64,
}

/// A node's timer queue and the state of its service task.
pub(crate) struct Timers {
    queue: Mutex<Queue>,
    /// The slots the service is waking (kept between rounds for its allocation). Never taken on the channel
    /// tasks' path.
    waking: Mutex<Vec<Arc<Slot>>>,
    notify: Notify,
    /// Whether a service task is running (it clears this when it ends, e.g. with its tokio runtime).
    running: AtomicBool,
    /// Set when the node is gone: the service ends.
    stopped: AtomicBool,
    slots: AtomicUsize,
    service_wakeups: AtomicU64,
    fired: AtomicU64,
    pushed: AtomicU64,
    deferred: AtomicU64,
    stale: AtomicU64,
    rebuilds: AtomicU64,
}

/// Locks `mutex`; a poisoned lock only means a panic elsewhere while holding it, and what it guards stays
/// consistent (every change to the queue is one `BinaryHeap` call plus counters).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Timers {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Timers {
            queue: Mutex::new(Queue {
                heap: BinaryHeap::new(),
                live: 0,
                next_wake: NEVER,
            }),
            waking: Mutex::new(Vec::new()),
            notify: Notify::new(),
            running: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            slots: AtomicUsize::new(0),
            service_wakeups: AtomicU64::new(0),
            fired: AtomicU64::new(0),
            pushed: AtomicU64::new(0),
            deferred: AtomicU64::new(0),
            stale: AtomicU64::new(0),
            rebuilds: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        lock(&self.queue)
    }

    /// A timer slot for one channel end (no deadline yet).
    pub(crate) fn timer(self: &Arc<Self>) -> Timer {
        self.slots.fetch_add(1, Ordering::Relaxed);
        Timer {
            slot: Arc::new(Slot {
                wanted: AtomicU64::new(NEVER),
                armed: AtomicU64::new(NEVER),
                generation: AtomicU64::new(0),
                waker: Mutex::new(None),
            }),
            timers: self.clone(),
            last: None,
        }
    }

    pub(crate) fn stats(&self) -> TimerStats {
        TimerStats {
            slots: self.slots.load(Ordering::Relaxed),
            entries: self.lock().heap.len(),
            service_wakeups: self.service_wakeups.load(Ordering::Relaxed),
            fired: self.fired.load(Ordering::Relaxed),
            pushed: self.pushed.load(Ordering::Relaxed),
            deferred: self.deferred.load(Ordering::Relaxed),
            stale: self.stale.load(Ordering::Relaxed),
            rebuilds: self.rebuilds.load(Ordering::Relaxed),
        }
    }

    /// Ends the service task (the node is gone).
    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.notify.notify_one();
    }

    /// Queues an entry for `slot` at its wanted deadline if that is earlier than its live entry's.
    fn push(self: &Arc<Self>, slot: &Arc<Slot>) {
        let mut queue = self.lock();
        let nudge = self.push_locked(&mut queue, slot);
        drop(queue);
        if nudge {
            self.notify.notify_one();
        }
        self.ensure_running();
    }

    /// Returns whether an entry was pushed before the service's next wake-up (it must be nudged).
    fn push_locked(&self, queue: &mut Queue, slot: &Arc<Slot>) -> bool {
        let wanted = slot.wanted.load(Ordering::SeqCst);
        let armed = slot.armed.load(Ordering::SeqCst);
        if wanted >= armed {
            return false;
        }
        if armed == NEVER {
            queue.live += 1;
        }
        let generation = slot.generation.load(Ordering::Relaxed).wrapping_add(1);
        slot.generation.store(generation, Ordering::Relaxed);
        slot.armed.store(wanted, Ordering::SeqCst);
        queue.heap.push(Entry {
            at: wanted,
            generation,
            slot: slot.clone(),
        });
        self.pushed.fetch_add(1, Ordering::Relaxed);
        self.keep_bound(queue);
        if wanted < queue.next_wake {
            queue.next_wake = wanted;
            return true;
        }
        false
    }

    /// Rebuilds the heap from its live entries if it holds more than `max(2 × live, MIN_REBUILD)`: called after
    /// every change that adds an entry or makes one superseded (a push, a service round, a dropped channel end),
    /// so the bound holds whenever the lock is free. A rebuild is O(n) and drops every superseded entry; it runs
    /// only when more than half of the heap is superseded, so it is amortised O(1) per push (module docs).
    fn keep_bound(&self, queue: &mut Queue) {
        if queue.heap.len() <= (2 * queue.live).max(MIN_REBUILD) {
            return;
        }
        let before = queue.heap.len();
        queue.heap.retain(Entry::is_live);
        debug_assert_eq!(queue.heap.len(), queue.live);
        self.stale
            .fetch_add((before - queue.heap.len()) as u64, Ordering::Relaxed);
        self.rebuilds.fetch_add(1, Ordering::Relaxed);
    }

    /// Serves every entry due at `now`; returns the next deadline ([`NEVER`] if none).
    fn serve(&self, now: u64) -> u64 {
        let mut woken = lock(&self.waking);
        let mut queue = self.lock();
        while queue.heap.peek().is_some_and(|e| e.at <= now) {
            let Some(entry) = queue.heap.pop() else { break };
            if !entry.is_live() {
                self.stale.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let slot = entry.slot;
            slot.armed.store(NEVER, Ordering::SeqCst);
            queue.live -= 1;
            let wanted = slot.wanted.load(Ordering::SeqCst);
            if wanted <= now {
                woken.push(slot);
            } else if wanted != NEVER {
                self.deferred.fetch_add(1, Ordering::Relaxed);
                self.push_locked(&mut queue, &slot);
            }
        }
        // Live entries popped above leave the superseded ones a larger share of the heap.
        self.keep_bound(&mut queue);
        let next = queue.heap.peek().map_or(NEVER, |e| e.at);
        queue.next_wake = next;
        drop(queue);
        self.fired.fetch_add(woken.len() as u64, Ordering::Relaxed);
        for slot in woken.drain(..) {
            // Under the slot's lock: a waker being replaced right now is woken either as the old one (then the
            // task re-arms, finds its entry gone and queues a new one) or as the new one.
            if let Some(waker) = slot.waker().as_ref() {
                waker.wake_by_ref();
            }
        }
        next
    }

    /// Starts the service task in the current tokio runtime unless one runs.
    fn ensure_running(self: &Arc<Self>) {
        if self.running.load(Ordering::Acquire) || self.stopped.load(Ordering::Acquire) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.running.swap(true, Ordering::AcqRel) {
            return;
        }
        runtime.spawn(serve_forever(self.clone()));
    }
}

/// Clears [`Timers::running`] when the service task ends or is dropped with its runtime, so the next push
/// starts another.
struct Running(Arc<Timers>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.store(false, Ordering::Release);
    }
}

/// The node's timer service: sleeps until the earliest deadline (one tokio timer), serves what is due.
async fn serve_forever(timers: Arc<Timers>) {
    let running = Running(timers);
    let timers = &running.0;
    let sleep = tokio::time::sleep_until(tokio::time::Instant::now());
    tokio::pin!(sleep);
    loop {
        if timers.stopped.load(Ordering::Acquire) {
            return;
        }
        timers.service_wakeups.fetch_add(1, Ordering::Relaxed);
        let next = timers.serve(now().as_millis());
        let deadline = if next == NEVER {
            // Nothing queued: a day is as good as never (a push nudges the service).
            tokio::time::Instant::now() + Duration::from_secs(86_400)
        } else {
            instant_of(Tick::from_millis(next))
        };
        if sleep.deadline() != deadline {
            sleep.as_mut().reset(deadline);
        }
        tokio::select! {
            _ = &mut sleep => {}
            _ = timers.notify.notified() => {}
        }
    }
}

/// One channel end's timer: wakes its task once the deadline it last asked for has passed.
pub(crate) struct Timer {
    slot: Arc<Slot>,
    timers: Arc<Timers>,
    /// A clone of the waker this timer last stored in its slot (`None` before the first `arm`). Only this
    /// timer writes the slot's waker and the service never takes it out, so the slot holds a clone of this
    /// one: a waker that `will_wake` it needs no store.
    last: Option<Waker>,
}

impl Timer {
    /// Asks to be woken through `waker` at `at` (`None`: no timer). With the waker of the previous call and a
    /// deadline that did not move earlier (a channel's idle poll) this takes no lock: a `will_wake` compare
    /// with the timer's own copy of the stored waker, and at most one atomic store of the deadline (none when
    /// it did not change). A different waker locks the slot to be stored; an earlier deadline queues one entry.
    ///
    /// `&mut self`: the timer is its slot's only writer, which is what lets it skip the slot's lock.
    pub(crate) fn arm(&mut self, at: Option<Tick>, waker: &Waker) {
        if !self.last.as_ref().is_some_and(|last| last.will_wake(waker)) {
            // Stored before the deadline below. A wake that reaches the replaced waker instead came after the
            // service had taken the entry (`armed` is `NEVER` then), so the check below queues a new entry for
            // this waker.
            let replaced = self.slot.waker().replace(waker.clone());
            self.last = Some(waker.clone());
            // Dropped outside the slot's lock (a waker's drop may do any work).
            drop(replaced);
        }
        let at = at.map_or(NEVER, |t| t.as_millis());
        // Only this timer writes `wanted`: an unchanged deadline needs no store (the service reads the same
        // value either way). A changed one is stored before `armed` is read, and the service clears `armed`
        // before it reads `wanted` (both `SeqCst`): either the service sees the new deadline, or this sees
        // the entry gone and queues a new one.
        if self.slot.wanted.load(Ordering::Relaxed) != at {
            self.slot.wanted.store(at, Ordering::SeqCst);
        }
        if at < self.slot.armed.load(Ordering::SeqCst) {
            self.timers.push(&self.slot);
        }
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        self.slot.wanted.store(NEVER, Ordering::SeqCst);
        {
            // Its entry, if any, is superseded now: dropped when it comes up or at the next rebuild, and not
            // counted live, so dropped channel ends do not loosen the heap's bound.
            let mut queue = self.timers.lock();
            if self.slot.armed.swap(NEVER, Ordering::SeqCst) != NEVER {
                queue.live -= 1;
                self.timers.keep_bound(&mut queue);
            }
        }
        // The task is not kept alive by its waker while that entry waits (nor by `last`, dropped with this).
        let stored = self.slot.waker().take();
        drop(stored);
        self.timers.slots.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Wake;

    /// A waker that counts its wake-ups.
    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counter() -> (Arc<Count>, Waker) {
        let c = Arc::new(Count(AtomicUsize::new(0)));
        (c.clone(), Waker::from(c))
    }

    fn woken(c: &Count) -> usize {
        c.0.load(Ordering::SeqCst)
    }

    fn at(ms: u64) -> Option<Tick> {
        Some(Tick::from_millis(ms))
    }

    // These tests drive `serve` with explicit times: no service task runs (no tokio runtime), so nothing
    // depends on the wall clock.

    #[test]
    fn fires_in_deadline_order_and_only_when_due() {
        let timers = Timers::new();
        let (mut a, mut b, mut c) = (timers.timer(), timers.timer(), timers.timer());
        let ((ca, wa), (cb, wb), (cc, wc)) = (counter(), counter(), counter());
        a.arm(at(300), &wa);
        b.arm(at(100), &wb);
        c.arm(at(200), &wc);
        assert_eq!(
            timers.serve(99),
            100,
            "nothing due before the earliest deadline"
        );
        assert_eq!((woken(&ca), woken(&cb), woken(&cc)), (0, 0, 0));
        assert_eq!(timers.serve(100), 200);
        assert_eq!((woken(&ca), woken(&cb), woken(&cc)), (0, 1, 0));
        assert_eq!(timers.serve(250), 300);
        assert_eq!((woken(&ca), woken(&cb), woken(&cc)), (0, 1, 1));
        assert_eq!(timers.serve(1000), NEVER);
        assert_eq!((woken(&ca), woken(&cb), woken(&cc)), (1, 1, 1));
        // Served once: a deadline that has fired does not fire again until re-armed.
        assert_eq!(timers.serve(2000), NEVER);
        assert_eq!(woken(&ca), 1);
        assert_eq!(timers.stats().fired, 3);
        assert_eq!(timers.stats().slots, 3);
    }

    #[test]
    fn rearming_later_pushes_nothing_and_defers_without_waking() {
        let timers = Timers::new();
        let mut t = timers.timer();
        let (c, w) = counter();
        t.arm(at(100), &w);
        // A thousand re-arms to later deadlines (an ACK moving the retransmission deadline on): one entry.
        for ms in 101..1101 {
            t.arm(at(ms), &w);
        }
        let s = timers.stats();
        assert_eq!((s.entries, s.pushed), (1, 1));
        // The entry comes due at 100: the slot wants 1100 now, so it is re-queued, nobody woken.
        assert_eq!(timers.serve(100), 1100);
        assert_eq!(woken(&c), 0);
        assert_eq!(timers.stats().deferred, 1);
        assert_eq!(timers.stats().entries, 1);
        assert_eq!(timers.serve(1100), NEVER);
        assert_eq!(woken(&c), 1);
    }

    #[test]
    fn earlier_deadline_supersedes_and_the_stale_entry_wakes_nobody() {
        let timers = Timers::new();
        let mut t = timers.timer();
        let (c, w) = counter();
        t.arm(at(500), &w);
        t.arm(at(100), &w);
        assert_eq!(
            timers.stats().entries,
            2,
            "the superseded entry stays until it comes up"
        );
        assert_eq!(timers.serve(100), 500);
        assert_eq!(woken(&c), 1);
        // The channel handled its timeout and wants 900 now: the old entry at 500 is stale (generation).
        t.arm(at(900), &w);
        assert_eq!(timers.serve(500), 900);
        assert_eq!(
            woken(&c),
            1,
            "a superseded deadline does not wake the channel"
        );
        assert_eq!(timers.stats().stale, 1);
        assert_eq!(timers.serve(900), NEVER);
        assert_eq!(woken(&c), 2);
        assert_eq!(timers.stats().entries, 0);
    }

    #[test]
    fn cancel_and_drop_wake_nobody() {
        let timers = Timers::new();
        let (mut kept, mut dropped) = (timers.timer(), timers.timer());
        let ((ck, wk), (cd, wd)) = (counter(), counter());
        kept.arm(at(100), &wk);
        dropped.arm(at(100), &wd);
        kept.arm(None, &wk);
        drop(dropped);
        assert_eq!(timers.stats().slots, 1);
        assert_eq!(timers.serve(100), NEVER);
        assert_eq!((woken(&ck), woken(&cd)), (0, 0));
        assert_eq!(timers.stats().entries, 0);
        // Re-armed after a cancel: a fresh entry.
        kept.arm(at(150), &wk);
        assert_eq!(timers.serve(150), NEVER);
        assert_eq!(woken(&ck), 1);
    }

    #[test]
    fn many_rearms_keep_one_live_entry_per_slot() {
        let timers = Timers::new();
        let mut slots: Vec<_> = (0..1000).map(|_| timers.timer()).collect();
        let (c, w) = counter();
        for round in 0..10u64 {
            for (i, t) in slots.iter_mut().enumerate() {
                t.arm(at(10_000 + round * 7 + i as u64), &w);
            }
        }
        assert_eq!(timers.stats().entries, 1000);
        timers.serve(100_000);
        assert_eq!(
            woken(&c),
            1000,
            "each slot fires once, at its last deadline"
        );
        assert_eq!(timers.stats().entries, 0);
    }

    /// The heap's bound (module docs) for the stats as they are now.
    fn within_bound(s: &TimerStats) -> bool {
        s.entries <= (2 * s.slots).max(MIN_REBUILD)
    }

    #[test]
    fn a_deadline_moving_earlier_100000_times_keeps_the_heap_bounded_and_fires_once_at_the_last() {
        let timers = Timers::new();
        let mut t = timers.timer();
        let (c, w) = counter();
        let mut most = 0;
        for i in 0..100_000u64 {
            t.arm(at(1_000_000 - i), &w);
            let s = timers.stats();
            assert!(within_bound(&s), "move {i}: {s:?}");
            most = most.max(s.entries);
        }
        let last = 1_000_000 - 99_999;
        let s = timers.stats();
        assert_eq!(s.pushed, 100_000, "every earlier deadline queued an entry");
        assert!(s.rebuilds >= 1_000, "{s:?}");
        assert!(
            most <= MIN_REBUILD,
            "one slot: at most {MIN_REBUILD} entries, saw {most}"
        );
        assert_eq!(
            timers.serve(last - 1),
            last,
            "nothing due before the last deadline"
        );
        assert_eq!(woken(&c), 0);
        timers.serve(last);
        assert_eq!(woken(&c), 1, "fired once, at the last deadline");
        // The superseded deadlines, all later, wake nobody when their times come.
        assert_eq!(timers.serve(2_000_000), NEVER);
        assert_eq!(woken(&c), 1);
        let s = timers.stats();
        assert_eq!((s.entries, s.fired), (0, 1), "{s:?}");
        assert_eq!(
            s.stale, 99_999,
            "every superseded entry dropped exactly once: {s:?}"
        );
    }

    #[test]
    fn many_slots_moving_earlier_stay_within_twice_the_slots() {
        let timers = Timers::new();
        let mut slots: Vec<_> = (0..1000).map(|_| timers.timer()).collect();
        let (c, w) = counter();
        for round in 0..50u64 {
            for (i, t) in slots.iter_mut().enumerate() {
                t.arm(at(100_000 - round * 1000 - i as u64), &w);
                let s = timers.stats();
                assert!(s.entries <= 2 * 1000, "round {round}, slot {i}: {s:?}");
            }
        }
        assert!(timers.stats().rebuilds >= 1);
        timers.serve(1_000_000);
        assert_eq!(woken(&c), 1000, "each slot fired once");
        assert_eq!(timers.stats().entries, 0);
    }

    #[test]
    fn rearming_with_another_waker_replaces_the_stored_one() {
        let timers = Timers::new();
        let mut t = timers.timer();
        let (a, b) = (
            Arc::new(Count(AtomicUsize::new(0))),
            Arc::new(Count(AtomicUsize::new(0))),
        );
        let (wa, wb) = (Waker::from(a.clone()), Waker::from(b.clone()));
        for _ in 0..1000 {
            t.arm(at(100), &wa);
        }
        assert_eq!(
            Arc::strong_count(&a),
            2 + 2,
            "stored once (slot and copy), never again for the same waker"
        );
        t.arm(at(100), &wb);
        assert_eq!(
            (Arc::strong_count(&a), Arc::strong_count(&b)),
            (2, 2 + 2),
            "the replaced waker was dropped"
        );
        timers.serve(100);
        assert_eq!(
            (woken(&a), woken(&b)),
            (0, 1),
            "the waker stored last is woken"
        );
        // Back to the first waker: stored again, and the next deadline wakes it.
        t.arm(at(200), &wa);
        timers.serve(200);
        assert_eq!((woken(&a), woken(&b)), (1, 1));
        drop(t);
        assert_eq!(
            (Arc::strong_count(&a), Arc::strong_count(&b)),
            (2, 2),
            "a dropped timer holds no waker"
        );
    }

    #[test]
    fn dropped_channel_ends_free_their_waker_and_tighten_the_bound() {
        let timers = Timers::new();
        let task = Arc::new(Count(AtomicUsize::new(0)));
        let mut slots: Vec<_> = (0..200).map(|_| timers.timer()).collect();
        {
            let w = Waker::from(task.clone());
            for _ in 0..10 {
                for (i, t) in slots.iter_mut().enumerate() {
                    t.arm(at(10_000 + i as u64), &w);
                }
            }
        }
        // Only the timers hold wakers now: our one `Arc` plus two per timer (the slot's and the timer's own
        // copy), however often each re-armed with the same waker.
        assert_eq!(Arc::strong_count(&task), 1 + 2 * 200);
        slots.truncate(20);
        let s = timers.stats();
        assert_eq!(s.slots, 20);
        assert!(within_bound(&s), "{s:?}");
        assert!(
            s.rebuilds >= 1,
            "dropping most slots rebuilt the heap: {s:?}"
        );
        assert_eq!(
            Arc::strong_count(&task),
            1 + 2 * 20,
            "a dropped channel end's task is not kept alive by its queued entry"
        );
        timers.serve(20_000);
        assert_eq!(woken(&task), 20, "only the slots still held fire");
    }

    /// A task on an OS thread: its waker counts the wake-ups and unparks the thread.
    struct Parked {
        wakes: AtomicUsize,
        thread: std::thread::Thread,
    }
    impl Wake for Parked {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.wakes.fetch_add(1, Ordering::SeqCst);
            self.thread.unpark();
        }
    }

    #[test]
    fn concurrent_arm_and_fire_from_two_threads_never_lose_a_wake_up() {
        const ROUNDS: u64 = 100_000;
        let timers = Timers::new();
        let clock = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        // The service: its own OS thread, advancing an explicit clock one millisecond per round and serving.
        let service = {
            let (timers, clock, stop) = (timers.clone(), clock.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let now = clock.fetch_add(1, Ordering::SeqCst) + 1;
                    timers.serve(now);
                    std::thread::yield_now();
                }
            })
        };
        // The task: this thread. Two wakers for it, each used for two polls in a row, so that half of the
        // registrations take the fast path (the waker stored last: no lock) and half replace the stored waker
        // under its lock while the service may be waking it; only a wake of the waker passed to the *last*
        // `arm` counts, as for a task whose waker changed.
        let tasks: Vec<_> = (0..2)
            .map(|_| {
                Arc::new(Parked {
                    wakes: AtomicUsize::new(0),
                    thread: std::thread::current(),
                })
            })
            .collect();
        let wakers: Vec<Waker> = tasks.iter().map(|t| Waker::from(t.clone())).collect();
        let mut t = timers.timer();
        let (mut polls, mut waits) = (0u64, 0u64);
        for round in 0..ROUNDS {
            let deadline = clock.load(Ordering::SeqCst) + 1 + round % 3;
            // Now and then the deadline first sits later and then moves earlier (a superseded entry).
            if round % 5 == 0 {
                t.arm(Some(Tick::from_millis(deadline + 7)), &wakers[1]);
            }
            // What a channel task does on each poll: past its deadline it handles the timeout itself; before it,
            // it arms the timer, and then either has more to do at once (the first few polls of a round: other
            // events) or goes idle until woken.
            let mut poll = 0u64;
            while clock.load(Ordering::SeqCst) < deadline {
                poll += 1;
                polls += 1;
                let pick = ((round + poll) / 2 % 2) as usize;
                let current = &tasks[pick];
                let seen = current.wakes.load(Ordering::SeqCst);
                t.arm(Some(Tick::from_millis(deadline)), &wakers[pick]);
                if poll <= round % 4 {
                    continue;
                }
                waits += 1;
                let waiting = std::time::Instant::now();
                while current.wakes.load(Ordering::SeqCst) == seen {
                    std::thread::park_timeout(Duration::from_millis(50));
                    // Liveness only (the service passes the deadline within microseconds): a wake-up lost.
                    if waiting.elapsed() > Duration::from_secs(20) {
                        stop.store(true, Ordering::SeqCst);
                        panic!(
                            "round {round}, poll {poll}: armed for {deadline}, clock at {}, never woken: {:?}",
                            clock.load(Ordering::SeqCst),
                            timers.stats()
                        );
                    }
                }
            }
        }
        t.arm(None, &wakers[0]);
        stop.store(true, Ordering::SeqCst);
        service.join().unwrap();
        let s = timers.stats();
        assert!(within_bound(&s), "{s:?}");
        assert!(
            s.fired > 0 && waits >= ROUNDS / 2,
            "the rounds did wait for the service: {waits} waits, {s:?}"
        );
        eprintln!("{ROUNDS} rounds, {polls} polls, {waits} waits: {s:?}");
    }
}
