//! What the CLI process tests share: running the `latchkey` binary against a home directory, and a child
//! process that is killed when the test lets go of it (also when an assertion fails).

#![allow(dead_code)] // each test crate uses its own subset

use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command, Output};

pub const BIN: &str = env!("CARGO_BIN_EXE_latchkey");

/// Runs `latchkey ARGS` with `LATCHKEY_HOME=home` and waits for it.
pub fn latchkey(home: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .env("LATCHKEY_HOME", home)
        .args(args)
        .output()
        .expect("run latchkey")
}

/// Runs `latchkey ARGS`, asserts it succeeded, and returns its trimmed standard output.
pub fn ok(home: &Path, args: &[&str]) -> String {
    let o = latchkey(home, args);
    assert!(
        o.status.success(),
        "latchkey {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// The identifier of the stored identity `name`.
pub fn identifier_of(home: &Path, name: &str) -> String {
    let v: Value = serde_json::from_str(&ok(home, &["--json", "identity", "show", name])).unwrap();
    v["identifier"].as_str().unwrap().to_string()
}

/// A child process killed and reaped on drop.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
