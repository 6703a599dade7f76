//! Human-readable or JSON output, chosen once per run.

use serde_json::Value;

#[derive(Clone, Copy)]
pub struct Output {
    pub json: bool,
}

impl Output {
    /// Prints one record: `human` as is, or `json` as one line.
    pub fn emit(&self, human: impl AsRef<str>, json: Value) {
        if self.json {
            println!("{json}");
        } else {
            println!("{}", human.as_ref());
        }
    }
}
