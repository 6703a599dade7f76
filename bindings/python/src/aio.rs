//! The bridge between Rust futures and asyncio: a future runs on our tokio runtime (no GIL held while it
//! waits or encrypts) and resolves an asyncio future on its event loop. Cancelling the asyncio future drops
//! the Rust future, so e.g. an abandoned `recv` does not swallow the next message.
//!
//! Interpreter exit: a thread that is inside Python when the interpreter finalizes is killed mid-call (a
//! fatal error). So completions are counted, and an `atexit` hook stops new ones and waits (GIL released)
//! for those in progress before finalization begins.

use pyo3::prelude::*;
use pyo3::types::PyCFunction;
use pyo3::IntoPyObjectExt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;
use tokio::sync::oneshot;

static RUNTIME: OnceLock<Runtime> = OnceLock::new();
static EXITING: AtomicBool = AtomicBool::new(false);
static COMPLETING: AtomicUsize = AtomicUsize::new(0);
/// Longest the exit hook waits for completions in progress (each is a few microseconds).
const EXIT_WAIT: Duration = Duration::from_secs(2);

/// The runtime every `Node` runs on, started on first use.
pub(crate) fn runtime() -> &'static Runtime {
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .thread_name("latchkey-tokio")
            .enable_all()
            .build()
            .expect("cannot start the tokio runtime")
    })
}

/// Runs `future` on the runtime and returns an asyncio future for its result (to `await`).
pub(crate) fn spawn<'py, F, T>(py: Python<'py>, future: F) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    let event_loop = py.import("asyncio")?.call_method0("get_running_loop")?;
    let py_future = event_loop.call_method0("create_future")?;
    let (cancel_tx, cancel_rx) = oneshot::channel();
    py_future.call_method1(
        "add_done_callback",
        (CancelOnDone {
            cancel: Mutex::new(Some(cancel_tx)),
        },),
    )?;
    let (event_loop, target) = (event_loop.unbind(), py_future.clone().unbind());
    runtime().spawn(async move {
        let result = tokio::select! {
            result = future => result,
            Ok(()) = cancel_rx => return,
        };
        if !begin_completion() {
            return;
        }
        // Python work happens off the async workers, which must never wait for the GIL.
        let completion = tokio::task::spawn_blocking(move || {
            Python::attach(|py| resolve_on_loop(py, &event_loop, &target, result));
            COMPLETING.fetch_sub(1, Ordering::SeqCst);
        });
        // Only a panic inside Python::attach could fail it; there is nobody to report it to.
        let _ = completion.await;
    });
    Ok(py_future)
}

fn begin_completion() -> bool {
    COMPLETING.fetch_add(1, Ordering::SeqCst);
    if EXITING.load(Ordering::SeqCst) {
        COMPLETING.fetch_sub(1, Ordering::SeqCst);
        return false;
    }
    true
}

fn resolve_on_loop<T>(
    py: Python<'_>,
    event_loop: &Py<PyAny>,
    target: &Py<PyAny>,
    result: PyResult<T>,
) where
    T: for<'a> IntoPyObject<'a>,
{
    let (ok, value) = match result.and_then(|v| v.into_py_any(py)) {
        Ok(value) => (true, value),
        Err(error) => (false, error.into_value(py).into_any()),
    };
    let scheduled = wrap_pyfunction!(resolve, py).and_then(|resolve: Bound<'_, PyCFunction>| {
        event_loop.bind(py).call_method1(
            "call_soon_threadsafe",
            (resolve, target.bind(py), ok, value),
        )
    });
    // The loop may be closed already (the awaiting coroutine is gone): nobody is left to tell.
    drop(scheduled);
}

/// Runs on the event loop's thread: sets the result unless the future was cancelled meanwhile.
#[pyfunction]
fn resolve(future: &Bound<'_, PyAny>, ok: bool, value: &Bound<'_, PyAny>) -> PyResult<()> {
    if future.call_method0("done")?.is_truthy()? {
        return Ok(());
    }
    let method = if ok { "set_result" } else { "set_exception" };
    future.call_method1(method, (value,))?;
    Ok(())
}

/// The asyncio done-callback that turns a cancelled asyncio future into a dropped Rust future.
#[pyclass]
struct CancelOnDone {
    cancel: Mutex<Option<oneshot::Sender<()>>>,
}

#[pymethods]
impl CancelOnDone {
    fn __call__(&self, future: &Bound<'_, PyAny>) -> PyResult<()> {
        if future.call_method0("cancelled")?.is_truthy()? {
            if let Some(cancel) = self.cancel.lock().ok().and_then(|mut c| c.take()) {
                let _ = cancel.send(());
            }
        }
        Ok(())
    }
}

/// The `atexit` hook: no completion may be inside Python once finalization starts.
#[pyfunction]
fn quiesce(py: Python<'_>) {
    EXITING.store(true, Ordering::SeqCst);
    py.detach(|| {
        let deadline = Instant::now() + EXIT_WAIT;
        while COMPLETING.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    });
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    py.import("atexit")?
        .call_method1("register", (wrap_pyfunction!(quiesce, py)?,))?;
    Ok(())
}
