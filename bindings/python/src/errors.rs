//! How Latchkey errors become Python exceptions. There is no list of errors here: at module init one
//! exception class is made per entry of the facade's one error table (`ErrorCode::ALL`), named by its stable
//! name, documented by its description, all subclasses of `latchkey.LatchkeyError`. This is the only place
//! errors are converted.
//!
//! A few classes also derive from the built-in exception a Python user would catch for that failure
//! (`PYTHON_BASES`): `Timeout` is a `TimeoutError`; `TransportError`, `BadAddress` and `AddressInUse` are
//! `OSError`s (as socket failures are); `ChannelClosed` and `DeliveryFailed` are `ConnectionError`s;
//! `InvalidArgument` and `InvalidUtf8` are `ValueError`s.

use latchkey_facade::{Error, ErrorCode};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};

create_exception!(
    latchkey,
    LatchkeyError,
    PyException,
    "Base class of every error Latchkey raises: one subclass per entry of the error table \
     (latchkey._error_table())."
);

/// Built-in exceptions that a table entry's class also derives from (after `LatchkeyError`).
fn python_bases(code: ErrorCode) -> &'static [&'static str] {
    match code {
        ErrorCode::Timeout => &["TimeoutError"],
        ErrorCode::TransportError | ErrorCode::BadAddress | ErrorCode::AddressInUse => &["OSError"],
        ErrorCode::ChannelClosed | ErrorCode::DeliveryFailed => &["ConnectionError"],
        ErrorCode::InvalidArgument | ErrorCode::InvalidUtf8 => &["ValueError"],
        _ => &[],
    }
}

/// The class of each table entry, in table order.
static CLASSES: PyOnceLock<Vec<Py<PyType>>> = PyOnceLock::new();

/// Creates and adds `LatchkeyError` and one class per table entry.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let base = py.get_type::<LatchkeyError>();
    m.add("LatchkeyError", &base)?;
    let builtins = py.import("builtins")?;
    let make_type = builtins.getattr("type")?;
    let mut classes = Vec::with_capacity(ErrorCode::ALL.len());
    for &code in ErrorCode::ALL {
        let mut bases = vec![base.clone().into_any()];
        for name in python_bases(code) {
            bases.push(builtins.getattr(*name)?);
        }
        let namespace = PyDict::new(py);
        namespace.set_item("__doc__", code.description())?;
        namespace.set_item("__module__", "latchkey")?;
        let class = make_type
            .call1((code.name(), PyTuple::new(py, bases)?, namespace))?
            .cast_into::<PyType>()?;
        m.add(code.name(), &class)?;
        classes.push(class.unbind());
    }
    // A second import of the module (e.g. in a subinterpreter) keeps the first set.
    let _ = CLASSES.set(py, classes);
    m.add_function(wrap_pyfunction!(_error_table, m)?)?;
    Ok(())
}

/// The error table as `(name, code, description)` tuples, in table order: what the exception classes and
/// the type stubs are checked against.
#[pyfunction]
fn _error_table() -> Vec<(&'static str, i32, &'static str)> {
    ErrorCode::ALL
        .iter()
        .map(|c| (c.name(), c.code(), c.description()))
        .collect()
}

/// Converts an error into an instance of its code's class (with the message as its only argument).
pub(crate) fn to_py_err(error: Error) -> PyErr {
    Python::attach(|py| {
        let index = ErrorCode::ALL.iter().position(|c| *c == error.code());
        match (CLASSES.get(py), index) {
            (Some(classes), Some(i)) => {
                PyErr::from_type(classes[i].bind(py).clone(), error.message().to_owned())
            }
            _ => LatchkeyError::new_err(error.message().to_owned()),
        }
    })
}

/// An error of `code` raised by the binding itself (e.g. an argument the facade never sees).
pub(crate) fn error(code: ErrorCode, message: impl Into<String>) -> PyErr {
    to_py_err(Error::new(code, message))
}

/// `?`-friendly conversion of facade results.
pub(crate) trait IntoPyResult<T> {
    fn into_py_result(self) -> PyResult<T>;
}

impl<T> IntoPyResult<T> for Result<T, Error> {
    fn into_py_result(self) -> PyResult<T> {
        self.map_err(to_py_err)
    }
}
