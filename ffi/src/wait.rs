//! Waiting from a C thread: the facade's async methods run on the facade's own runtime, and a C caller
//! blocks its thread until they finish. C threads are never threads of that runtime (no callback runs C code
//! there), so blocking here cannot stall the runtime.

use crate::status::{FfiError, FfiResult};
use crate::LATCHKEY_WAIT_FOREVER;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::Duration;

struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs `future` to completion on this thread, parking between polls.
pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        thread::park();
    }
}

/// A `timeout_ms` argument of a call that waits for something to arrive: `None` waits without limit
/// (`LATCHKEY_WAIT_FOREVER`), 0 does not wait at all.
pub(crate) fn arrival_limit(timeout_ms: u32) -> Option<Duration> {
    (timeout_ms != LATCHKEY_WAIT_FOREVER).then(|| Duration::from_millis(timeout_ms.into()))
}

/// A `timeout_ms` argument of a call that must wait for a peer (connect, request): at least 1 ms;
/// `LATCHKEY_WAIT_FOREVER` is the longest a `u32` of milliseconds says (about 49 days).
pub(crate) fn peer_limit(timeout_ms: u32, name: &str) -> FfiResult<Duration> {
    if timeout_ms == 0 {
        return Err(FfiError::InvalidArgument(format!(
            "`{name}` must be at least 1 ms: this call waits for a peer"
        )));
    }
    Ok(Duration::from_millis(timeout_ms.into()))
}
