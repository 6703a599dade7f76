//! What a mailbox or listener handle hands out, queued on the C side: a task on the facade's runtime moves
//! each item from the facade into a bounded queue here, so a C thread can wait for one with a timeout
//! without losing any (an abandoned wait takes nothing out of the facade), and an event loop can poll a
//! file descriptor that is readable exactly while the queue has an item or is closed.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Poll, Waker};
use std::time::Duration;

/// Items held on the C side before the pump stops taking more from the facade (whose own bounded queue then
/// applies back-pressure to senders).
const CAPACITY: usize = 64;

/// The longest [`Queue::close`] waits for the pump to end.
const STOP_WAIT: Duration = Duration::from_secs(5);

/// Why [`Queue::pop`] returned no item.
pub(crate) enum Empty {
    /// Nothing arrived within the time given.
    TimedOut,
    /// Closed (by its owner, or its source ended) and drained.
    Closed,
}

struct State<T> {
    items: VecDeque<T>,
    closed: bool,
    /// Whether the signal socket holds its one byte (readable).
    signalled: bool,
    /// The pump, waiting for room.
    pump: Option<Waker>,
    /// The pump has ended and dropped its source.
    stopped: bool,
}

pub(crate) struct Queue<T> {
    state: Mutex<State<T>>,
    arrived: Condvar,
    /// The end an event loop polls: readable while `signalled`.
    readable: UnixStream,
    writable: UnixStream,
}

impl<T: Send + 'static> Queue<T> {
    /// A queue fed by `next` (called again after each item, until it yields `None`) from a task on the
    /// facade's runtime.
    pub(crate) fn start<F, Fut>(mut next: F) -> std::io::Result<Arc<Self>>
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Option<T>> + Send,
    {
        let (readable, writable) = UnixStream::pair()?;
        readable.set_nonblocking(true)?;
        writable.set_nonblocking(true)?;
        let queue = Arc::new(Queue {
            state: Mutex::new(State {
                items: VecDeque::new(),
                closed: false,
                signalled: false,
                pump: None,
                stopped: false,
            }),
            arrived: Condvar::new(),
            readable,
            writable,
        });
        let pumped = queue.clone();
        let pump = async move {
            while pumped.room().await {
                match next().await {
                    Some(item) => pumped.push(item),
                    None => {
                        pumped.end(false);
                        break;
                    }
                }
            }
            // Whatever the source holds (a mailbox and its address) is released before `close` returns.
            drop(next);
            pumped.lock().stopped = true;
            pumped.arrived.notify_all();
        };
        // Detached: the task ends when the source ends or the queue is closed (see `close`).
        drop(latchkey_facade::node::runtime::runtime().spawn(pump));
        Ok(queue)
    }
}

impl<T> Queue<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // No code panics while holding it; if one did, the state is still consistent (plain fields).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes the signal socket readable exactly while there is an item or the queue is closed.
    fn update_signal(&self, state: &mut State<T>) {
        let wanted = !state.items.is_empty() || state.closed;
        if wanted && !state.signalled {
            // One byte in an empty socket buffer: cannot fail for lack of room.
            let _ = (&self.writable).write(&[1]);
            state.signalled = true;
        } else if !wanted && state.signalled {
            // Reads whatever is there (one byte, unless the caller wrote into it against the rules).
            let mut sink = [0u8; 64];
            while matches!((&self.readable).read(&mut sink), Ok(n) if n > 0) {}
            state.signalled = false;
        }
    }

    /// Resolves to `true` once there is room for one more item, `false` once the queue is closed.
    async fn room(&self) -> bool {
        poll_fn(|cx| {
            let mut state = self.lock();
            if state.closed {
                Poll::Ready(false)
            } else if state.items.len() < CAPACITY {
                Poll::Ready(true)
            } else {
                state.pump = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    fn push(&self, item: T) {
        let mut state = self.lock();
        if state.closed {
            return;
        }
        state.items.push_back(item);
        self.update_signal(&mut state);
        drop(state);
        self.arrived.notify_one();
    }

    /// Closes the queue. Its owner (`discard`) drops what is queued; when the source ends, what is queued
    /// is still handed out.
    fn end(&self, discard: bool) {
        let mut state = self.lock();
        state.closed = true;
        if discard {
            state.items.clear();
        }
        self.update_signal(&mut state);
        let pump = state.pump.take();
        drop(state);
        self.arrived.notify_all();
        if let Some(pump) = pump {
            pump.wake();
        }
    }

    /// Closes the queue for its owner: queued items are dropped, waiting callers return `Closed`. Then
    /// `close_source` must make the source yield `None` (or the pump is waiting for room and ends anyway);
    /// returns once the pump has ended and released the source (bounded, in case the source never ends).
    pub(crate) fn close(&self, close_source: impl FnOnce()) {
        self.end(true);
        close_source();
        let state = self.lock();
        let _ = self
            .arrived
            .wait_timeout_while(state, STOP_WAIT, |state| !state.stopped);
    }

    /// The next item, waiting up to `limit` (`None`: without limit; zero: not at all).
    pub(crate) fn pop(&self, limit: Option<Duration>) -> Result<T, Empty> {
        let waiting = |state: &mut State<T>| state.items.is_empty() && !state.closed;
        let mut state = self.lock();
        state = match limit {
            None => self
                .arrived
                .wait_while(state, waiting)
                .unwrap_or_else(|e| e.into_inner()),
            Some(limit) => {
                self.arrived
                    .wait_timeout_while(state, limit, waiting)
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            }
        };
        match state.items.pop_front() {
            Some(item) => {
                self.update_signal(&mut state);
                let pump = state.pump.take();
                drop(state);
                if let Some(pump) = pump {
                    pump.wake();
                }
                Ok(item)
            }
            None if state.closed => Err(Empty::Closed),
            None => Err(Empty::TimedOut),
        }
    }

    /// The file descriptor an event loop polls for reading.
    pub(crate) fn fd(&self) -> RawFd {
        self.readable.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Instant;

    /// Whether the descriptor is readable: reads its byte and puts it back, under the queue's lock.
    fn readable(queue: &Queue<u32>) -> bool {
        let state = queue.lock();
        let mut byte = [0u8; 1];
        let was = matches!((&queue.readable).read(&mut byte), Ok(1));
        if was {
            (&queue.writable).write_all(&byte).unwrap();
        }
        assert_eq!(was, state.signalled);
        was
    }

    /// Waits (briefly) until the pump has queued `n` items or closed.
    fn settle(queue: &Queue<u32>, n: usize) {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            let state = queue.lock();
            if state.items.len() >= n || state.closed {
                return;
            }
            drop(state);
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn items_arrive_in_order_then_the_end_and_the_fd_follows() {
        let counter = Arc::new(AtomicU32::new(0));
        let source = counter.clone();
        let queue = Queue::start(move || {
            let n = source.fetch_add(1, Ordering::SeqCst);
            async move { (n < 3).then_some(n) }
        })
        .unwrap();
        settle(&queue, 3);
        assert!(readable(&queue));
        for expected in 0..3 {
            assert_eq!(queue.pop(Some(Duration::ZERO)).ok(), Some(expected));
        }
        // Drained and ended: closed, and the descriptor stays readable so an event loop notices.
        assert!(matches!(queue.pop(None), Err(Empty::Closed)));
        assert!(readable(&queue));
    }

    /// A source that yields nothing until `shut`, then `None` (as a facade mailbox does once closed).
    #[derive(Default)]
    struct Gate {
        shut: std::sync::atomic::AtomicBool,
        waiter: Mutex<Option<Waker>>,
    }

    impl Gate {
        fn shut(&self) {
            self.shut.store(true, Ordering::SeqCst);
            if let Some(waker) = self.waiter.lock().unwrap().take() {
                waker.wake();
            }
        }

        async fn next(&self) -> Option<u32> {
            poll_fn(|cx| {
                *self.waiter.lock().unwrap() = Some(cx.waker().clone());
                if self.shut.load(Ordering::SeqCst) {
                    Poll::Ready(None)
                } else {
                    Poll::Pending
                }
            })
            .await
        }
    }

    #[test]
    fn a_wait_times_out_without_taking_anything_and_close_wakes_waiters() {
        let gate = Arc::new(Gate::default());
        let source = gate.clone();
        let queue: Arc<Queue<u32>> = Queue::start(move || {
            let source = source.clone();
            async move { source.next().await }
        })
        .unwrap();
        assert!(!readable(&queue));
        let start = Instant::now();
        assert!(matches!(
            queue.pop(Some(Duration::from_millis(30))),
            Err(Empty::TimedOut)
        ));
        assert!(start.elapsed() >= Duration::from_millis(30));
        let waiter = {
            let queue = queue.clone();
            std::thread::spawn(move || matches!(queue.pop(None), Err(Empty::Closed)))
        };
        std::thread::sleep(Duration::from_millis(20));
        let start = Instant::now();
        queue.close(|| gate.shut());
        assert!(
            queue.lock().stopped,
            "close returns once the pump has ended"
        );
        assert!(start.elapsed() < STOP_WAIT);
        assert!(waiter.join().unwrap());
        assert!(readable(&queue));
    }

    #[test]
    fn a_full_queue_holds_the_pump_back_until_an_item_is_taken() {
        let counter = Arc::new(AtomicU32::new(0));
        let source = counter.clone();
        let queue = Queue::start(move || {
            let n = source.fetch_add(1, Ordering::SeqCst);
            async move { Some(n) }
        })
        .unwrap();
        settle(&queue, CAPACITY);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(queue.lock().items.len(), CAPACITY);
        assert_eq!(queue.pop(Some(Duration::ZERO)).ok(), Some(0));
        settle(&queue, CAPACITY);
        assert_eq!(queue.lock().items.len(), CAPACITY);
        assert_eq!(queue.pop(Some(Duration::ZERO)).ok(), Some(1));
        queue.close(|| ());
        assert!(
            queue.lock().stopped,
            "close returns once the pump has ended"
        );
        assert!(matches!(
            queue.pop(Some(Duration::ZERO)),
            Err(Empty::Closed)
        ));
    }
}
