//! One timer service per node: the deadlines of all its channel ends in one queue, served by one task with one
//! tokio timer, instead of one tokio `Sleep` per channel end.
//!
//! Each channel end holds a [`Timer`]: a small shared slot with the deadline it wants now (`wanted`), the
//! deadline of its one live entry in the node's queue (`armed`), that entry's generation and the waker of the
//! channel task. The queue is a binary heap of `(deadline, generation, slot)` ordered by deadline, with lazy
//! cancellation:
//!
//! * **Re-arming** stores `wanted` (one atomic store). Only a deadline *earlier* than the armed one pushes a new
//!   entry (O(log n), into the heap's existing capacity: no allocation in steady state); the superseded entry
//!   stays in the heap and is recognised by its generation when it comes up, then dropped without waking
//!   anyone. A later deadline, or none, pushes nothing.
//! * **When an entry comes due** the service reads the slot's `wanted`: if it has passed, the channel task is
//!   woken (once); if it moved later meanwhile, the entry is re-queued at the new deadline without waking the
//!   channel; if the channel wants no timer, the entry is dropped. A channel is therefore woken only when its
//!   own deadline has passed, and each slot has at most one live entry: superseded deadlines cannot cause
//!   wake-up storms.
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
    /// The deadline the channel wants now (milliseconds on the sessions' clock, or [`NEVER`]).
    wanted: AtomicU64,
    /// The deadline of the slot's live entry in the queue, or [`NEVER`] if it has none. Changed only under the
    /// queue's lock.
    armed: AtomicU64,
    /// The generation of the live entry; older entries of this slot are stale. Changed only under the lock.
    generation: AtomicU64,
    /// The channel task to wake.
    waker: Mutex<Option<Waker>>,
}

impl Slot {
    fn waker(&self) -> MutexGuard<'_, Option<Waker>> {
        self.waker.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct Entry {
    at: u64,
    generation: u64,
    slot: Arc<Slot>,
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
    /// The deadline the service sleeps until ([`NEVER`] when the heap is empty): a push before it nudges the
    /// service.
    next_wake: u64,
}

/// What the node's timer service has done (see [`crate::Node::timer_stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimerStats {
    /// Channel ends holding a timer slot now.
    pub slots: usize,
    /// Entries in the queue, live and superseded.
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
}

/// A node's timer queue and the state of its service task.
pub(crate) struct Timers {
    queue: Mutex<Queue>,
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
}

impl Timers {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Timers {
            queue: Mutex::new(Queue {
                heap: BinaryHeap::new(),
                next_wake: NEVER,
            }),
            notify: Notify::new(),
            running: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            slots: AtomicUsize::new(0),
            service_wakeups: AtomicU64::new(0),
            fired: AtomicU64::new(0),
            pushed: AtomicU64::new(0),
            deferred: AtomicU64::new(0),
            stale: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A poisoned lock only means a panic elsewhere while holding it; the heap itself stays consistent.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
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
        if wanted >= slot.armed.load(Ordering::SeqCst) {
            return false;
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
        if wanted < queue.next_wake {
            queue.next_wake = wanted;
            return true;
        }
        false
    }

    /// Serves every entry due at `now`; returns the next deadline ([`NEVER`] if none).
    fn serve(&self, now: u64) -> u64 {
        let mut queue = self.lock();
        let mut woken = Vec::new();
        while queue.heap.peek().is_some_and(|e| e.at <= now) {
            let Some(entry) = queue.heap.pop() else { break };
            let slot = entry.slot;
            if entry.generation != slot.generation.load(Ordering::Relaxed)
                || slot.armed.load(Ordering::SeqCst) != entry.at
            {
                self.stale.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            slot.armed.store(NEVER, Ordering::SeqCst);
            let wanted = slot.wanted.load(Ordering::SeqCst);
            if wanted <= now {
                woken.push(slot);
            } else if wanted != NEVER {
                self.deferred.fetch_add(1, Ordering::Relaxed);
                self.push_locked(&mut queue, &slot);
            }
        }
        let next = queue.heap.peek().map_or(NEVER, |e| e.at);
        queue.next_wake = next;
        drop(queue);
        self.fired.fetch_add(woken.len() as u64, Ordering::Relaxed);
        for slot in woken {
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
}

impl Timer {
    /// Asks to be woken through `waker` at `at` (`None`: no timer). Cheap when the deadline moves later or
    /// stays (one atomic store); an earlier deadline queues one entry.
    pub(crate) fn arm(&self, at: Option<Tick>, waker: &Waker) {
        {
            let mut current = self.slot.waker();
            if !current.as_ref().is_some_and(|w| w.will_wake(waker)) {
                *current = Some(waker.clone());
            }
        }
        let at = at.map_or(NEVER, |t| t.as_millis());
        self.slot.wanted.store(at, Ordering::SeqCst);
        if at < self.slot.armed.load(Ordering::SeqCst) {
            self.timers.push(&self.slot);
        }
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        // The slot's entry, if any, is dropped when it comes up; the task is not kept alive by its waker.
        self.slot.wanted.store(NEVER, Ordering::SeqCst);
        self.slot.waker().take();
        self.timers.slots.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
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
        let (a, b, c) = (timers.timer(), timers.timer(), timers.timer());
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
        let t = timers.timer();
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
        let t = timers.timer();
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
        let (kept, dropped) = (timers.timer(), timers.timer());
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
        let slots: Vec<_> = (0..1000).map(|_| timers.timer()).collect();
        let (c, w) = counter();
        for round in 0..10u64 {
            for (i, t) in slots.iter().enumerate() {
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
}
