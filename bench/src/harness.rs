//! A small timing harness. Contenders of one comparison are measured round-robin, sample by sample, so a
//! burst of noise on the shared machine hits all of them alike and their ratio stays meaningful.

use std::hint::black_box;
use std::time::{Duration, Instant};

/// One thing to time: `run` performs one operation (a handshake, one encrypt+decrypt…).
pub struct Contender<'a> {
    pub name: String,
    pub run: Box<dyn FnMut() + 'a>,
}

impl<'a> Contender<'a> {
    pub fn new(name: impl Into<String>, run: impl FnMut() + 'a) -> Self {
        Contender {
            name: name.into(),
            run: Box::new(run),
        }
    }
}

/// How long to warm up and how long each timed sample lasts.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub warm_up: Duration,
    pub sample: Duration,
    pub samples: usize,
}

impl Settings {
    pub fn from_env() -> Self {
        // LATCHKEY_BENCH_QUICK=1 gives a rough table in seconds (for checking the suite, not for numbers).
        if std::env::var_os("LATCHKEY_BENCH_QUICK").is_some() {
            Settings {
                warm_up: Duration::from_millis(20),
                sample: Duration::from_millis(2),
                samples: 5,
            }
        } else {
            Settings {
                warm_up: Duration::from_millis(300),
                sample: Duration::from_millis(20),
                samples: 31,
            }
        }
    }
}

/// Median nanoseconds per operation of each contender, in input order.
pub fn compare(settings: Settings, contenders: &mut [Contender<'_>]) -> Vec<f64> {
    // Calibrate: find an iteration count per contender whose batch takes about one sample length. The
    // calibration doubles as warm-up.
    let mut batch = Vec::with_capacity(contenders.len());
    for c in contenders.iter_mut() {
        let start = Instant::now();
        let mut n: u64 = 0;
        while start.elapsed() < settings.warm_up || n == 0 {
            (c.run)();
            n += 1;
        }
        let per_op = start.elapsed().as_secs_f64() / n as f64;
        batch.push(((settings.sample.as_secs_f64() / per_op).ceil() as u64).max(1));
    }
    let mut samples = vec![Vec::with_capacity(settings.samples); contenders.len()];
    for _ in 0..settings.samples {
        for (i, c) in contenders.iter_mut().enumerate() {
            let start = Instant::now();
            for _ in 0..batch[i] {
                (c.run)();
            }
            let elapsed = black_box(start.elapsed());
            samples[i].push(elapsed.as_nanos() as f64 / batch[i] as f64);
        }
    }
    let medians: Vec<f64> = samples.into_iter().map(median).collect();
    if std::env::var_os("LATCHKEY_BENCH_VERBOSE").is_some() {
        for (c, ns) in contenders.iter().zip(&medians) {
            eprintln!("  {:<14} {ns:>12.0} ns/op", c.name);
        }
    }
    medians
}

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_lengths() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
    }

    #[test]
    fn compare_runs_every_contender_and_reports_positive_times() {
        let settings = Settings {
            warm_up: Duration::from_millis(1),
            sample: Duration::from_micros(200),
            samples: 3,
        };
        let (mut a, mut b) = (0u64, 0u64);
        let times = compare(
            settings,
            &mut [
                Contender::new("a", || a += black_box(1)),
                Contender::new("b", || b += black_box(1)),
            ],
        );
        assert_eq!(times.len(), 2);
        assert!(times.iter().all(|t| *t > 0.0));
        assert!(a > 0 && b > 0);
    }
}
