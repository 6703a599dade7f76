//! Human-readable or JSON output, chosen once per run.

use serde_json::Value;
use std::fmt::Write;

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

    /// A warning on stderr: `warning: …`, or `{"warning": …, "kind": …}` with `--json`.
    pub fn warn(&self, kind: &str, message: &str) {
        if self.json {
            eprintln!("{}", serde_json::json!({"warning": message, "kind": kind}));
        } else {
            eprintln!("warning: {message}");
        }
    }
}

/// Unix seconds as an RFC 3339 UTC timestamp (`2025-03-01T12:00:00Z`), for people reading `identity show`.
pub fn rfc3339_utc(unix_seconds: i64) -> String {
    let days = unix_seconds.div_euclid(86_400);
    let secs = unix_seconds.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's days_from_civil, inverted), proleptic Gregorian.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3_600,
        secs % 3_600 / 60,
        secs % 60
    )
}

/// Text that came from a remote peer (or quotes it), made safe to print: every control character (C0, DEL,
/// C1), the Unicode line and paragraph separators and the bidirectional-text controls become visible escapes
/// (`\n`, `\r`, `\t`, `\u{1b}`, …), and a backslash becomes `\\` so an escape cannot be faked. A peer
/// therefore cannot start a new output line (forging a `message from …` record), move the cursor, change
/// colours or reorder what the terminal shows. The same text goes into human output and, as a plain string,
/// into `--json` records, so both say the same thing.
pub fn escape_controls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

fn needs_escape(c: char) -> bool {
    c.is_control() // C0, DEL and C1
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' // line and paragraph separators
                | '\u{061c}' | '\u{200e}' | '\u{200f}' // bidirectional marks
                | '\u{202a}'..='\u{202e}' // bidirectional embeddings and overrides
                | '\u{2066}'..='\u{2069}' // bidirectional isolates
        )
}

/// Bytes from a remote peer as printable text: invalid UTF-8 becomes U+FFFD, then [`escape_controls`].
pub fn remote_text(bytes: &[u8]) -> String {
    escape_controls(&String::from_utf8_lossy(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_become_visible_escapes() {
        assert_eq!(
            escape_controls("\nmessage from lk0000 forged\x1b[31m"),
            "\\nmessage from lk0000 forged\\u{1b}[31m"
        );
        assert_eq!(
            escape_controls("a\r\tb\u{0}\u{7f}\u{9b}c"),
            "a\\r\\tb\\u{0}\\u{7f}\\u{9b}c"
        );
        assert_eq!(escape_controls("\u{202e}x\u{2028}"), "\\u{202e}x\\u{2028}");
        assert_eq!(escape_controls(r"C:\n"), r"C:\\n");
        assert_eq!(
            escape_controls("ding dong, ünïcödé ✓"),
            "ding dong, ünïcödé ✓"
        );
        assert_eq!(remote_text(b"\xff\x1b"), "\u{fffd}\\u{1b}");
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_utc(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339_utc(4_107_542_399), "2100-02-28T23:59:59Z");
        assert_eq!(rfc3339_utc(-1), "1969-12-31T23:59:59Z");
    }
}
