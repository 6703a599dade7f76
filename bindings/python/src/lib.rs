//! `latchkey._latchkey`: the Python extension module behind the `latchkey` package. It converts values and
//! errors between Python and `latchkey-facade` (its only Latchkey dependency); all protocol and runtime logic
//! stays in Rust behind the facade.

#![forbid(unsafe_code)]

mod aio;
mod authority;
mod channel;
mod convert;
mod device;
mod errors;
mod identity;
mod node;
mod trust;

use pyo3::prelude::*;

#[pymodule]
fn _latchkey(m: &Bound<'_, PyModule>) -> PyResult<()> {
    errors::register(m)?;
    aio::register(m)?;
    authority::register(m)?;
    m.add_class::<convert::PyCipherSuite>()?;
    m.add_class::<convert::PySigningAlgorithm>()?;
    m.add_class::<identity::PyVault>()?;
    m.add_class::<identity::PyIdentity>()?;
    m.add_class::<identity::PyIdentityStore>()?;
    m.add_class::<identity::PyStoredPeer>()?;
    m.add_class::<identity::PyStoredIdentity>()?;
    m.add_class::<channel::PySecureChannel>()?;
    m.add_class::<node::PyNode>()?;
    m.add_class::<node::PyNodeChannel>()?;
    m.add_class::<node::PyChannelListener>()?;
    m.add_class::<node::PyMailbox>()?;
    m.add_class::<node::PyNodeMessage>()?;
    m.add_class::<device::PyDeviceSession>()?;
    m.add_class::<device::PyDeviceEvent>()?;
    m.add_class::<device::PyDeviceMessage>()?;
    m.add_function(wrap_pyfunction!(device::encode_routed_message, m)?)?;
    m.add_function(wrap_pyfunction!(device::decode_routed_message, m)?)?;
    m.add_function(wrap_pyfunction!(identity::history_identifier, m)?)?;
    m.add_function(wrap_pyfunction!(identity::verify_history_update, m)?)?;
    m.add("FRAME_OVERHEAD", latchkey_facade::FRAME_OVERHEAD)?;
    m.add("MAX_PLAINTEXT_LEN", latchkey_facade::MAX_PLAINTEXT_LEN)?;
    m.add("__version__", latchkey_facade::VERSION)?;
    Ok(())
}
