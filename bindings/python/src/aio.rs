//! The bridge between the facade's futures and asyncio.
//!
//! Every async method returns a [`PyCoroutine`]: a native object that is a real coroutine as far as asyncio
//! is concerned (`send`, `throw`, `close`, `__await__`, registered as a `collections.abc.Coroutine`), so
//! `await`, `asyncio.create_task`, `asyncio.run`, `gather` and `wait_for` all take it. Like a coroutine it
//! does nothing until first awaited: then its Rust future starts on the facade's runtime (no GIL held while it
//! waits on the network or does crypto) and resolves an asyncio future on the awaiting event loop.
//! Cancelling (or closing, or dropping the coroutine) drops the Rust future, which cancels the facade's work,
//! so e.g. an abandoned `recv` does not swallow the next message.
//!
//! Interpreter exit: a thread that is inside Python when the interpreter finalizes is killed mid-call (a
//! fatal error). So completions are counted, and an `atexit` hook stops new ones and waits (GIL released)
//! for those in progress before finalization begins. Nothing else on the runtime's threads enters Python.

use crate::errors::to_py_err;
use latchkey_facade::node::runtime::runtime;
use latchkey_facade::Error;
use pyo3::exceptions::{PyRuntimeError, PyStopIteration};
use pyo3::prelude::*;
use pyo3::types::{PyCFunction, PyTuple};
use pyo3::IntoPyObjectExt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

static EXITING: AtomicBool = AtomicBool::new(false);
static COMPLETING: AtomicUsize = AtomicUsize::new(0);
/// Longest the exit hook waits for completions in progress (each is a few microseconds).
const EXIT_WAIT: Duration = Duration::from_secs(2);

/// Turns the Rust result into the Python result, with the GIL (on a blocking thread or the loop's thread).
type Output = Box<dyn FnOnce(Python<'_>) -> PyResult<Py<PyAny>> + Send>;
type Work = Pin<Box<dyn Future<Output = Output> + Send>>;

/// A coroutine whose result is `future`'s, converted by `convert` (which may also raise, e.g.
/// `StopAsyncIteration`). `name` is what `repr` and asyncio's task listings show.
pub(crate) fn coroutine_with<F, T, C>(name: &'static str, future: F, convert: C) -> PyCoroutine
where
    F: Future<Output = T> + Send + 'static,
    T: Send + 'static,
    C: FnOnce(Python<'_>, T) -> PyResult<Py<PyAny>> + Send + 'static,
{
    let work = async move {
        let value = future.await;
        Box::new(move |py: Python<'_>| convert(py, value)) as Output
    };
    PyCoroutine::new(name, State::Waiting(Box::pin(work)))
}

/// A coroutine returning `future`'s value, or raising its error as the error table's class.
pub(crate) fn coroutine<F, T>(name: &'static str, future: F) -> PyCoroutine
where
    F: Future<Output = Result<T, Error>> + Send + 'static,
    T: for<'py> IntoPyObject<'py> + Send + 'static,
{
    coroutine_with(name, future, |py, result| {
        result.map_err(to_py_err)?.into_py_any(py)
    })
}

/// A coroutine returning `None` (not `()`, which Python would see as an empty tuple).
pub(crate) fn coroutine_none<F>(name: &'static str, future: F) -> PyCoroutine
where
    F: Future<Output = Result<(), Error>> + Send + 'static,
{
    coroutine_with(name, future, |py, result| {
        result.map_err(to_py_err)?;
        Ok(py.None())
    })
}

/// A coroutine that returns `value` as soon as it is awaited, without suspending.
pub(crate) fn ready(name: &'static str, value: Py<PyAny>) -> PyCoroutine {
    PyCoroutine::new(name, State::Ready(value))
}

enum State {
    Ready(Py<PyAny>),
    /// Not started yet.
    Waiting(Work),
    /// Started: `iter` is the asyncio future's `__await__` iterator; `cancel` stops the Rust side.
    Running {
        future: Py<PyAny>,
        iter: Py<PyAny>,
        cancel: Canceller,
    },
    Done,
}

/// Stops the Rust side of a started coroutine: once, from whichever comes first (asyncio cancelling the
/// future, `close()`, `throw()`, or the coroutine being dropped).
#[derive(Clone)]
struct Canceller(Arc<Mutex<Option<oneshot::Sender<()>>>>);

impl Canceller {
    fn cancel(&self) {
        if let Some(cancel) = self.0.lock().ok().and_then(|mut c| c.take()) {
            let _ = cancel.send(());
        }
    }
}

/// The awaitable every Latchkey async method returns: a coroutine (see the module documentation).
#[pyclass(name = "Coroutine", module = "latchkey", frozen)]
pub(crate) struct PyCoroutine {
    name: &'static str,
    state: Mutex<State>,
}

impl PyCoroutine {
    fn new(name: &'static str, state: State) -> Self {
        PyCoroutine {
            name,
            state: Mutex::new(state),
        }
    }

    fn lock(&self) -> PyResult<std::sync::MutexGuard<'_, State>> {
        // Only a re-entrant call (from Python code run by this very call) could find it locked.
        self.state
            .try_lock()
            .map_err(|_| PyRuntimeError::new_err("coroutine already executing"))
    }
}

/// Runs `work` on the facade's runtime; returns the asyncio future it resolves on the running loop.
fn start(py: Python<'_>, work: Work) -> PyResult<State> {
    let event_loop = py.import("asyncio")?.call_method0("get_running_loop")?;
    let py_future = event_loop.call_method0("create_future")?;
    let (cancel_tx, cancel_rx) = oneshot::channel();
    let cancel = Canceller(Arc::new(Mutex::new(Some(cancel_tx))));
    py_future.call_method1(
        "add_done_callback",
        (CancelOnDone {
            cancel: cancel.clone(),
        },),
    )?;
    let iter = py_future.call_method0("__await__")?.unbind();
    let (event_loop, target) = (event_loop.unbind(), py_future.clone().unbind());
    runtime().spawn(async move {
        let output = tokio::select! {
            output = work => output,
            Ok(()) = cancel_rx => return,
        };
        if !begin_completion() {
            return;
        }
        // Python work happens off the async workers, which must never wait for the GIL.
        let completion = tokio::task::spawn_blocking(move || {
            Python::attach(|py| resolve_on_loop(py, &event_loop, &target, output(py)));
            COMPLETING.fetch_sub(1, Ordering::SeqCst);
        });
        // Only a panic inside Python::attach could fail it; there is nobody to report it to.
        let _ = completion.await;
    });
    Ok(State::Running {
        future: py_future.unbind(),
        iter,
        cancel,
    })
}

/// The exception `throw(typ, val, tb)` raises when nothing inside can take it.
fn thrown(args: &Bound<'_, PyTuple>) -> PyErr {
    let exception = (|| -> PyResult<Bound<'_, PyAny>> {
        let typ = args.get_item(0)?;
        if typ.is_instance_of::<pyo3::exceptions::PyBaseException>() {
            return Ok(typ);
        }
        match args.get_item(1) {
            Ok(val) if val.is_instance_of::<pyo3::exceptions::PyBaseException>() => Ok(val),
            Ok(val) if !val.is_none() => typ.call1((val,)),
            _ => typ.call0(),
        }
    })();
    match exception {
        Ok(exception) => PyErr::from_value(exception),
        Err(e) => e,
    }
}

#[pymethods]
impl PyCoroutine {
    fn send(&self, py: Python<'_>, value: Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let mut state = self.lock()?;
        loop {
            match std::mem::replace(&mut *state, State::Done) {
                State::Ready(value) => return Err(PyStopIteration::new_err((value,))),
                State::Waiting(work) => *state = start(py, work)?,
                State::Running {
                    future,
                    iter,
                    cancel,
                } => {
                    let step = iter.bind(py).call_method1("send", (&value,));
                    if let Ok(yielded) = step {
                        *state = State::Running {
                            future,
                            iter,
                            cancel,
                        };
                        return Ok(yielded.unbind());
                    }
                    return step.map(Bound::unbind);
                }
                State::Done => {
                    return Err(PyRuntimeError::new_err(
                        "cannot reuse already awaited coroutine",
                    ))
                }
            }
        }
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.send(py, py.None().into_bound(py))
    }

    fn __await__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*args))]
    fn throw(&self, py: Python<'_>, args: Bound<'_, PyTuple>) -> PyResult<Py<PyAny>> {
        let mut state = self.lock()?;
        match std::mem::replace(&mut *state, State::Done) {
            State::Running {
                future,
                iter,
                cancel,
            } => {
                let step = iter.bind(py).call_method1("throw", args);
                match step {
                    Ok(yielded) => {
                        *state = State::Running {
                            future,
                            iter,
                            cancel,
                        };
                        Ok(yielded.unbind())
                    }
                    Err(e) => {
                        cancel.cancel();
                        Err(e)
                    }
                }
            }
            _ => Err(thrown(&args)),
        }
    }

    fn close(&self) -> PyResult<()> {
        let mut state = self.lock()?;
        if let State::Running { cancel, .. } = std::mem::replace(&mut *state, State::Done) {
            cancel.cancel();
        }
        Ok(())
    }

    #[getter]
    fn __name__(&self) -> &'static str {
        self.name.rsplit('.').next().unwrap_or(self.name)
    }

    #[getter]
    fn __qualname__(&self) -> &'static str {
        self.name
    }

    fn __repr__(&self) -> String {
        format!("<latchkey coroutine {}>", self.name)
    }
}

impl Drop for PyCoroutine {
    fn drop(&mut self) {
        // Dropped while started (nobody will read the result): stop the work. Never-started work is
        // simply dropped with the state.
        if let Ok(State::Running { cancel, .. }) = self.state.get_mut().map(|s| &*s) {
            cancel.cancel();
        }
    }
}

fn begin_completion() -> bool {
    COMPLETING.fetch_add(1, Ordering::SeqCst);
    if EXITING.load(Ordering::SeqCst) {
        COMPLETING.fetch_sub(1, Ordering::SeqCst);
        return false;
    }
    true
}

fn resolve_on_loop(
    py: Python<'_>,
    event_loop: &Py<PyAny>,
    target: &Py<PyAny>,
    result: PyResult<Py<PyAny>>,
) {
    let (ok, value) = match result {
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
    cancel: Canceller,
}

#[pymethods]
impl CancelOnDone {
    fn __call__(&self, future: &Bound<'_, PyAny>) -> PyResult<()> {
        if future.call_method0("cancelled")?.is_truthy()? {
            self.cancel.cancel();
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
    // Coroutine checks (asyncio.iscoroutine, so create_task and run) go through this ABC.
    py.import("collections.abc")?
        .getattr("Coroutine")?
        .call_method1("register", (py.get_type::<PyCoroutine>(),))?;
    Ok(())
}
