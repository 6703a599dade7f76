//! The machine description printed with every table.

use std::process::Command;

fn first_line_of(path: &str, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

fn command(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

pub fn describe() -> Vec<(&'static str, String)> {
    let unknown = || "unknown".to_string();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get().to_string())
        .unwrap_or_else(|_| unknown());
    let memory = first_line_of("/proc/meminfo", "MemTotal")
        .and_then(|kb| kb.trim_end_matches(" kB").trim().parse::<u64>().ok())
        .map(|kb| format!("{:.1} GiB", kb as f64 / 1024.0 / 1024.0))
        .unwrap_or_else(unknown);
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    vec![
        ("nproc", cores),
        (
            "CPU",
            first_line_of("/proc/cpuinfo", "model name").unwrap_or_else(unknown),
        ),
        ("memory", memory),
        (
            "rustc",
            command(&rustc, &["--version"]).unwrap_or_else(unknown),
        ),
        ("kernel", command("uname", &["-sr"]).unwrap_or_else(unknown)),
        (
            "commit",
            command("git", &["rev-parse", "--short", "HEAD"]).unwrap_or_else(unknown),
        ),
    ]
}
