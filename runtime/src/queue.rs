//! Bounded single-consumer queues that hold memory only while they hold messages.
//!
//! Every worker mailbox and every channel's command queue is one of these. tokio's bounded `mpsc` allocates a
//! block of 32 slots when it is created and keeps it while the channel lives, which at 100,000 idle channels
//! (three queues each) was most of the runtime's memory per channel. Here the messages wait in a `VecDeque`
//! that is allocated on the first message and released as soon as the queue is drained, so an idle queue is
//! one small shared header. The semantics are those of a bounded `mpsc` channel:
//!
//! * at most `capacity` messages wait; [`Sender::send`] waits for room (first come, first served: the slots
//!   are a fair semaphore), [`Sender::try_send`] fails with `Full`;
//! * once the receiver is dropped, sends fail with `Closed` and what was queued is dropped;
//! * [`Receiver::recv`] returns `None` once every sender is gone and the queue is drained.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use tokio::sync::{Semaphore, TryAcquireError};

struct Items<T> {
    queue: VecDeque<T>,
    /// Set when the receiver is dropped: nothing is queued any more.
    closed: bool,
    /// The receiver waiting for a message (or for the last sender to leave). Kept here rather than in the
    /// receiver's future, so a worker polling several queues carries no waiting state of its own.
    waker: Option<Waker>,
}

struct Shared<T> {
    items: Mutex<Items<T>>,
    /// Free slots: one permit per message that may still be queued.
    slots: Semaphore,
    senders: AtomicUsize,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, Items<T>> {
        // A poisoned lock only means a panic elsewhere while holding it; the queue itself stays consistent.
        self.items.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `value` into a slot already taken from `slots`; gives it back if the receiver is gone.
    fn push(&self, value: T) -> Result<(), T> {
        let mut items = self.lock();
        if items.closed {
            return Err(value);
        }
        items.queue.push_back(value);
        let waker = items.waker.take();
        drop(items);
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }
}

/// Why [`Sender::try_send`] did not queue a message (the message comes back).
#[derive(Debug)]
pub(crate) enum TrySendError<T> {
    Full(T),
    Closed(T),
}

/// A bounded queue of `capacity` (at least 1) messages.
pub(crate) fn bounded<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        items: Mutex::new(Items {
            queue: VecDeque::new(),
            closed: false,
            waker: None,
        }),
        slots: Semaphore::new(capacity.clamp(1, Semaphore::MAX_PERMITS)),
        senders: AtomicUsize::new(1),
    });
    (Sender(shared.clone()), Receiver(shared))
}

/// The sending side; cheap to clone.
pub(crate) struct Sender<T>(Arc<Shared<T>>);

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.0.senders.fetch_add(1, Ordering::Relaxed);
        Sender(self.0.clone())
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if self.0.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            let waker = self.0.lock().waker.take();
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    }
}

impl<T> Sender<T> {
    /// Queues `value`, waiting while the queue is full; `Err(value)` once the receiver is gone.
    pub(crate) async fn send(&self, value: T) -> Result<(), T> {
        match self.0.slots.acquire().await {
            Ok(slot) => slot.forget(),
            Err(_) => return Err(value),
        }
        self.0.push(value)
    }

    /// Queues `value` if there is room now.
    pub(crate) fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        match self.0.slots.try_acquire() {
            Ok(slot) => slot.forget(),
            Err(TryAcquireError::NoPermits) => return Err(TrySendError::Full(value)),
            Err(TryAcquireError::Closed) => return Err(TrySendError::Closed(value)),
        }
        self.0.push(value).map_err(TrySendError::Closed)
    }

    /// Resolves once the queue has room for one message, or once the receiver is gone (the slot is not
    /// kept: a later `try_send` may still find the queue full, and then waits again). Holds no sender, so
    /// waiting does not keep the queue open.
    pub(crate) fn room(&self) -> impl std::future::Future<Output = ()> + Send + 'static
    where
        T: Send + 'static,
    {
        let shared = self.0.clone();
        async move {
            drop(shared.slots.acquire().await);
        }
    }

    /// Whether the receiver is gone.
    pub(crate) fn is_closed(&self) -> bool {
        self.0.slots.is_closed()
    }
}

/// The receiving side. Dropping it closes the queue.
pub(crate) struct Receiver<T>(Arc<Shared<T>>);

impl<T> Receiver<T> {
    /// The next message; `None` once every sender is gone and nothing is left. Cancel-safe: a message is
    /// taken only by a call that returns it.
    pub(crate) async fn recv(&mut self) -> Option<T> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Polls for the next message: `Ready(None)` once every sender is gone and nothing is left; `Pending`
    /// registers `cx`'s waker to be woken by the next message (or the last sender leaving).
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut items = self.0.lock();
        if let Some(value) = items.queue.pop_front() {
            if items.queue.is_empty() {
                // Drained: give the buffer back, so an idle queue holds no memory.
                items.queue = VecDeque::new();
            }
            drop(items);
            self.0.slots.add_permits(1);
            return Poll::Ready(Some(value));
        }
        // A sender leaving decrements the count before it takes the lock to wake us, so either we see zero
        // here or it finds our waker.
        if self.0.senders.load(Ordering::Acquire) == 0 {
            return Poll::Ready(None);
        }
        match &mut items.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Messages waiting now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.0.lock().queue.len()
    }
}

impl<T> Receiver<T> {
    /// Closes the queue: what is queued is dropped, senders waiting for room and new sends fail.
    pub(crate) fn close(&mut self) {
        let queued = {
            let mut items = self.0.lock();
            items.closed = true;
            items.waker = None;
            std::mem::take(&mut items.queue)
        };
        // Senders waiting for a slot fail now, and new sends fail at once.
        self.0.slots.close();
        drop(queued);
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn bounded_in_order_and_full() {
        let (tx, mut rx) = bounded(2);
        tx.try_send(1).unwrap();
        tx.send(2).await.unwrap();
        assert!(matches!(tx.try_send(3), Err(TrySendError::Full(3))));
        assert_eq!(rx.recv().await, Some(1));
        tx.try_send(3).unwrap();
        assert_eq!(rx.recv().await, Some(2));
        assert_eq!(rx.recv().await, Some(3));
        assert_eq!(rx.len(), 0);
    }

    #[tokio::test]
    async fn a_full_queue_makes_send_wait_until_the_receiver_takes_one() {
        let (tx, mut rx) = bounded(1);
        tx.send(1).await.unwrap();
        let waiting = tokio::spawn({
            let tx = tx.clone();
            async move { tx.send(2).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "send waits while the queue is full");
        assert_eq!(rx.recv().await, Some(1));
        waiting.await.unwrap().unwrap();
        assert_eq!(rx.recv().await, Some(2));
    }

    #[tokio::test]
    async fn recv_ends_when_every_sender_is_gone_after_draining() {
        let (tx, mut rx) = bounded(4);
        let tx2 = tx.clone();
        tx.send("a").await.unwrap();
        drop(tx);
        tx2.send("b").await.unwrap();
        let pending = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(v) = rx.recv().await {
                got.push(v);
            }
            got
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!pending.is_finished(), "a sender is still there");
        drop(tx2);
        assert_eq!(pending.await.unwrap(), vec!["a", "b"]);
    }

    #[tokio::test]
    async fn dropping_the_receiver_fails_waiting_and_new_senders() {
        let (tx, rx) = bounded(1);
        tx.send(1).await.unwrap();
        assert!(!tx.is_closed());
        let waiting = tokio::spawn({
            let tx = tx.clone();
            async move { tx.send(2).await }
        });
        tokio::task::yield_now().await;
        drop(rx);
        assert_eq!(waiting.await.unwrap(), Err(2));
        assert!(tx.is_closed());
        assert!(matches!(tx.try_send(3), Err(TrySendError::Closed(3))));
        assert_eq!(tx.send(4).await, Err(4));
    }

    #[tokio::test]
    async fn recv_is_cancel_safe_in_select() {
        let (tx, mut rx) = bounded(8);
        for i in 0..5 {
            tx.send(i).await.unwrap();
        }
        let mut got = Vec::new();
        while got.len() < 5 {
            tokio::select! {
                v = rx.recv() => got.push(v.unwrap()),
                _ = tokio::task::yield_now() => {}
            }
        }
        assert_eq!(got, vec![0, 1, 2, 3, 4]);
    }

    /// Senders on other threads against a receiver that keeps draining a queue of 2: every message arrives
    /// exactly once, in each sender's order, and `recv` ends when the senders are done (no wake-up is lost
    /// between a receiver's check and its wait, or a sender's push and its wake).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_message_or_wake_up_is_lost_across_threads() {
        const SENDERS: u64 = 4;
        const EACH: u64 = 5_000;
        let (tx, mut rx) = bounded(2);
        for s in 0..SENDERS {
            let tx = tx.clone();
            tokio::spawn(async move {
                for i in 0..EACH {
                    if i % 2 == 0 {
                        tx.send((s, i)).await.unwrap();
                    } else {
                        let mut v = (s, i);
                        loop {
                            match tx.try_send(v) {
                                Ok(()) => break,
                                Err(TrySendError::Full(back)) => {
                                    v = back;
                                    tokio::task::yield_now().await;
                                }
                                Err(TrySendError::Closed(_)) => panic!("receiver gone"),
                            }
                        }
                    }
                }
            });
        }
        drop(tx);
        let mut next = [0u64; SENDERS as usize];
        while let Some((s, i)) = rx.recv().await {
            assert_eq!(next[s as usize], i, "sender {s} out of order");
            next[s as usize] += 1;
        }
        assert_eq!(next, [EACH; SENDERS as usize]);
    }

    #[tokio::test]
    async fn a_drained_queue_releases_its_buffer() {
        let (tx, mut rx) = bounded(256);
        for i in 0..100 {
            tx.try_send(i).unwrap();
        }
        assert!(rx.0.lock().queue.capacity() >= 100);
        for _ in 0..100 {
            rx.recv().await.unwrap();
        }
        assert_eq!(rx.0.lock().queue.capacity(), 0);
    }
}
