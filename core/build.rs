//! Sets `cfg(latchkey_aws_lc)` when the AWS-LC provider is compiled in: the `aws-lc` feature is on AND the
//! target is one where `Cargo.toml` declares the AWS-LC dependencies (the same list as its
//! `[target.'cfg(...)'.dependencies]` table; keep the two identical).

fn main() {
    println!("cargo::rustc-check-cfg=cfg(latchkey_aws_lc)");
    println!("cargo::rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let target_has_aws_lc =
        matches!(os.as_str(), "linux" | "macos") && matches!(arch.as_str(), "x86_64" | "aarch64");
    if std::env::var_os("CARGO_FEATURE_AWS_LC").is_some() && target_has_aws_lc {
        println!("cargo::rustc-cfg=latchkey_aws_lc");
    }
}
