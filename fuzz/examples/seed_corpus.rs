//! Writes the seed inputs of every fuzz target (built from `tests/vectors/*.json`, see `src/seeds.rs`) to
//! `<dir>/<target>/seed-<name>`. Usage: `cargo run --example seed_corpus -- [dir]` (default: `corpus`
//! next to this crate's Cargo.toml). Existing corpus files are left alone.

use std::path::PathBuf;

fn main() {
    let dir = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus"));
    let seeds = latchkey_fuzz::seeds::all();
    for seed in &seeds {
        let target_dir = dir.join(seed.target);
        std::fs::create_dir_all(&target_dir).expect("create corpus directory");
        std::fs::write(target_dir.join(format!("seed-{}", seed.name)), &seed.data)
            .expect("write seed");
    }
    let mut targets: Vec<&str> = seeds.iter().map(|s| s.target).collect();
    targets.sort_unstable();
    targets.dedup();
    println!(
        "{} seeds for {} targets in {}",
        seeds.len(),
        targets.len(),
        dir.display()
    );
}
