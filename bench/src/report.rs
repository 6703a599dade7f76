//! The one table: each row shows our figure with each provider, one peer measured in the same run, the
//! ratios and the target. Ratios, targets and verdicts are for ring and AWS-LC; the RustCrypto column (the
//! pure-Rust provider firmware uses) is informational.

use std::fmt::Write as _;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Operations per second (higher is better).
    PerSecond,
    /// Plaintext megabytes (10^6 B) per second through encrypt+decrypt (higher is better).
    MegabytesPerSecond,
    /// Bytes (lower is better).
    Bytes,
    /// Microseconds (lower is better).
    Micros,
    /// Messages per second (higher is better).
    MessagesPerSecond,
}

impl Unit {
    fn format(self, value: f64) -> String {
        match self {
            Unit::PerSecond => format!("{} /s", group_thousands(value.round() as u64)),
            Unit::MegabytesPerSecond => format!("{value:.0} MB/s"),
            Unit::Bytes => format!("{} B", group_thousands(value.round() as u64)),
            Unit::Micros => format!("{value:.0} µs"),
            Unit::MessagesPerSecond => format!("{} msg/s", group_thousands(value.round() as u64)),
        }
    }

    fn higher_is_better(self) -> bool {
        !matches!(self, Unit::Bytes | Unit::Micros)
    }
}

/// What a row promises.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    /// ours ÷ peer must be at least this.
    RatioAtLeast(f64),
    /// Our own figure must be at most this.
    AtMost(f64),
}

#[derive(Debug, Clone)]
pub struct Row {
    pub measurement: String,
    pub unit: Unit,
    /// Ours with the ring + x25519-dalek provider.
    pub ring: Option<f64>,
    /// Ours with the pure-Rust RustCrypto provider.
    pub rustcrypto: Option<f64>,
    /// Ours with the aws-lc provider.
    pub aws_lc: Option<f64>,
    pub peer: String,
    pub peer_value: Option<f64>,
    pub target: Option<Target>,
}

impl Row {
    /// How many times better than the peer (above 1: we win), whichever way the unit points.
    fn ratio(&self, ours: Option<f64>) -> Option<f64> {
        let (ours, peer) = (ours?, self.peer_value?);
        Some(if self.unit.higher_is_better() {
            ours / peer
        } else {
            peer / ours
        })
    }

    fn verdict(&self, ours: Option<f64>) -> Option<bool> {
        let ours = ours?;
        match self.target? {
            Target::RatioAtLeast(min) => Some(self.ratio(Some(ours))? >= min),
            Target::AtMost(max) => Some(ours <= max),
        }
    }

    /// "met", or by how much the target is missed.
    fn verdict_text(&self, ours: Option<f64>) -> String {
        match (self.verdict(ours), self.target, ours) {
            (Some(true), _, _) => "met".into(),
            (Some(false), Some(Target::RatioAtLeast(min)), Some(_)) => {
                let ratio = self.ratio(ours).unwrap_or(0.0);
                missed_by((1.0 - ratio / min) * 100.0)
            }
            (Some(false), Some(Target::AtMost(max)), Some(v)) => missed_by((v / max - 1.0) * 100.0),
            _ => "—".into(),
        }
    }
}

fn missed_by(percent: f64) -> String {
    if percent < 1.0 {
        "missed by <1%".into()
    } else {
        format!("missed by {percent:.0}%")
    }
}

fn cell(value: Option<f64>, unit: Unit) -> String {
    value.map_or("—".into(), |v| unit.format(v))
}

fn ratio_cell(ratio: Option<f64>) -> String {
    ratio.map_or("—".into(), |r| format!("{r:.2}×"))
}

fn target_cell(target: Option<Target>, unit: Unit) -> String {
    match target {
        None => "—".into(),
        // One decimal unless the target needs two (0.95).
        Some(Target::RatioAtLeast(min)) if (min * 10.0).fract().abs() < 1e-9 => {
            format!("≥ {min:.1}×")
        }
        Some(Target::RatioAtLeast(min)) => format!("≥ {min:.2}×"),
        Some(Target::AtMost(max)) => format!("≤ {}", unit.format(max)),
    }
}

const HEADER: [&str; 10] = [
    "Measurement",
    "Ours: ring+x25519-dalek",
    "Ours: RustCrypto",
    "Ours: aws-lc",
    "Peer",
    "Peer figure",
    "Ratio (ring)",
    "Ratio (aws-lc)",
    "Target",
    "Verdict (ring / aws-lc)",
];

fn cells(row: &Row) -> [String; 10] {
    let verdict = if row.target.is_some() {
        format!(
            "{} / {}",
            row.verdict_text(row.ring),
            row.verdict_text(row.aws_lc)
        )
    } else {
        "—".into()
    };
    [
        row.measurement.clone(),
        cell(row.ring, row.unit),
        cell(row.rustcrypto, row.unit),
        cell(row.aws_lc, row.unit),
        row.peer.clone(),
        cell(row.peer_value, row.unit),
        ratio_cell(row.ratio(row.ring)),
        ratio_cell(row.ratio(row.aws_lc)),
        target_cell(row.target, row.unit),
        verdict,
    ]
}

/// A GitHub-flavoured Markdown table (also readable as plain text).
pub fn markdown_table(rows: &[Row]) -> String {
    let all: Vec<[String; 10]> = rows.iter().map(cells).collect();
    let mut widths = HEADER.map(|h| h.chars().count());
    for r in &all {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cols: &[String]| {
        let mut s = String::from("|");
        for (c, w) in cols.iter().zip(widths) {
            let _ = write!(s, " {c}{} |", " ".repeat(w - c.chars().count()));
        }
        s.push('\n');
        s
    };
    let mut out = line(&HEADER.map(String::from));
    out.push_str(&line(&widths.map(|w| "-".repeat(w))));
    for r in &all {
        out.push_str(&line(r));
    }
    out
}

fn group_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(ring: f64, aws: f64, peer: f64, target: Target) -> Row {
        Row {
            measurement: "m".into(),
            unit: Unit::PerSecond,
            ring: Some(ring),
            rustcrypto: None,
            aws_lc: Some(aws),
            peer: "p".into(),
            peer_value: Some(peer),
            target: Some(target),
        }
    }

    #[test]
    fn verdicts_compare_ratios_and_absolute_limits() {
        let r = row(900.0, 1500.0, 1000.0, Target::RatioAtLeast(1.2));
        assert_eq!(r.verdict_text(r.ring), "missed by 25%");
        assert_eq!(r.verdict_text(r.aws_lc), "met");
        let close = row(1199.0, 1199.0, 1000.0, Target::RatioAtLeast(1.2));
        assert_eq!(close.verdict_text(close.ring), "missed by <1%");
        let m = Row {
            unit: Unit::Bytes,
            peer_value: None,
            ..row(1100.0, 900.0, 0.0, Target::AtMost(1000.0))
        };
        assert_eq!(m.verdict_text(m.ring), "missed by 10%");
        assert_eq!(m.verdict_text(m.aws_lc), "met");
    }

    #[test]
    fn ratios_point_the_same_way_for_times_and_rates() {
        let latency = Row {
            unit: Unit::Micros,
            ..row(50.0, 100.0, 100.0, Target::RatioAtLeast(1.0))
        };
        assert_eq!(latency.ratio(latency.ring), Some(2.0));
        assert_eq!(latency.verdict_text(latency.aws_lc), "met");
    }

    #[test]
    fn table_has_a_header_a_rule_and_one_line_per_row() {
        let t = markdown_table(&[row(1234567.0, 2.0, 1.0, Target::RatioAtLeast(1.0))]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("| Measurement"));
        assert!(lines[2].contains("1 234 567 /s"));
        assert!(lines[2].contains("1234567.00×"));
    }
}
