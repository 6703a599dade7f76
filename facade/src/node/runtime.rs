//! The facade owns the async runtime its nodes run on: callers (Python's asyncio, a Kotlin coroutine, a C
//! thread, the CLI) never enter one. Every async method runs its work as a task here and only awaits the
//! result, so any executor can await it; dropping that await cancels the task (so an abandoned `recv` does not
//! swallow the next message).

use crate::error::{Error, ErrorCode, Result};
use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

static RUNTIME: OnceLock<Runtime> = OnceLock::new();

/// The runtime every facade node runs on, started on first use (two worker threads or one per core).
pub fn runtime() -> &'static Runtime {
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .thread_name("latchkey")
            .enable_all()
            .build()
            .expect("cannot start the tokio runtime")
    })
}

/// Runs `work` on the facade's runtime and waits for its result from any executor. Dropping the returned
/// future aborts the task.
pub(crate) async fn run<T, F>(work: F) -> Result<T>
where
    F: Future<Output = Result<T>> + Send + 'static,
    T: Send + 'static,
{
    AbortOnDrop(runtime().spawn(work)).await
}

struct AbortOnDrop<T>(JoinHandle<Result<T>>);

impl<T> Future for AbortOnDrop<T> {
    type Output = Result<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx).map(|joined| match joined {
            Ok(result) => result,
            Err(e) if e.is_panic() => Err(Error::new(
                ErrorCode::Panic,
                "a Latchkey task panicked (a bug: please report it)",
            )),
            Err(_) => Err(Error::new(
                ErrorCode::ChannelClosed,
                "the operation was cancelled",
            )),
        })
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs synchronous setup that spawns tasks (listeners, services) inside the runtime's context.
pub(crate) fn enter<T>(f: impl FnOnce() -> T) -> T {
    let _guard = runtime().enter();
    f()
}
