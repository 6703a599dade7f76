//! `hsm_bench` (`make bench-hsm`, not part of `make test`): signatures per second through each vault and
//! first-contact handshakes per second when the Noise static key lives in a PKCS#11 token, on a throwaway
//! SoftHSM2 token and swtpm (temp dirs, loopback). One thread, the median of 5 runs of about 1 s each.

use latchkey_core::channel::{Handshake, TrustAnyIdentity};
use latchkey_core::identity::{IdentityOptions, LocalIdentity, Vaults};
use latchkey_core::vault::{
    PinSource, Pkcs11Config, Pkcs11Vault, SigningAlgorithm, SigningVault, SoftwareVault, TpmVault,
};
use latchkey_core::Timestamp;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const PIN: &str = "123456";

/// Operations per second of `op`: the median of 5 runs of about one second each.
fn rate(mut op: impl FnMut()) -> f64 {
    op(); // warm up (sessions, caches)
    let mut rates: Vec<f64> = (0..5)
        .map(|_| {
            let start = Instant::now();
            let mut n = 0u64;
            while start.elapsed() < Duration::from_secs(1) {
                op();
                n += 1;
            }
            n as f64 / start.elapsed().as_secs_f64()
        })
        .collect();
    rates.sort_by(|a, b| a.partial_cmp(b).unwrap());
    rates[2]
}

fn handshake_rate(a: &LocalIdentity, b: &LocalIdentity) -> f64 {
    let now = Timestamp::now();
    rate(|| {
        let mut i =
            Handshake::initiator(a.handshake_config(Arc::new(TrustAnyIdentity), now)).unwrap();
        let mut r =
            Handshake::responder(b.handshake_config(Arc::new(TrustAnyIdentity), now)).unwrap();
        r.read_message(&i.write_message().unwrap()).unwrap();
        i.read_message(&r.write_message().unwrap()).unwrap();
        r.read_message(&i.write_message().unwrap()).unwrap();
        i.finish().unwrap();
        r.finish().unwrap();
    })
}

fn main() {
    let temp = tempfile::tempdir().unwrap();
    std::fs::create_dir(temp.path().join("tokens")).unwrap();
    let conf = temp.path().join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            temp.path().join("tokens").display()
        ),
    )
    .unwrap();
    std::env::set_var("SOFTHSM2_CONF", &conf);
    let ok = Command::new("softhsm2-util")
        .args([
            "--init-token",
            "--free",
            "--label",
            "bench",
            "--so-pin",
            "5678",
            "--pin",
            PIN,
        ])
        .stdout(Stdio::null())
        .status()
        .expect("softhsm2-util (make deps-hsm)")
        .success();
    assert!(ok, "softhsm2-util failed");
    let pin_file = temp.path().join("pin");
    std::fs::write(&pin_file, PIN).unwrap();
    let token = Arc::new(
        Pkcs11Vault::open(Pkcs11Config::new(
            MODULE,
            "bench",
            PinSource::File(pin_file),
        ))
        .unwrap(),
    );

    let state = tempfile::tempdir().unwrap();
    let port = 23_000 + (std::process::id() % 20_000) as u16;
    let mut swtpm = Command::new("swtpm")
        .args(["socket", "--tpm2", "--flags", "not-need-init,startup-clear"])
        .arg("--tpmstate")
        .arg(format!("dir={}", state.path().display()))
        .args([
            "--server",
            &format!("type=tcp,port={port},bindaddr=127.0.0.1"),
        ])
        .args([
            "--ctrl",
            &format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("swtpm (make deps-hsm)");
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let tpm = TpmVault::open(&format!("swtpm:host=127.0.0.1,port={port}")).unwrap();
    let software = Arc::new(SoftwareVault::new());
    let message = [7u8; 64];

    println!("| operation | per second |");
    println!("|---|---:|");
    let row = |name: &str, r: f64| println!("| {name} | {r:.0} |");
    for (name, vault) in [
        ("software", software.clone() as Arc<dyn SigningVault>),
        ("SoftHSM2 (PKCS#11)", token.clone() as Arc<dyn SigningVault>),
    ] {
        for algorithm in [SigningAlgorithm::Ed25519, SigningAlgorithm::EcdsaP256] {
            let key = vault.generate_signing_key(algorithm).unwrap();
            let r = rate(|| {
                vault.sign(&key, &message).unwrap();
            });
            row(&format!("sign {algorithm:?}, {name}"), r);
            let _ = vault.delete_signing_key(&key);
        }
    }
    let key = tpm
        .generate_signing_key(SigningAlgorithm::EcdsaP256)
        .unwrap();
    row(
        "sign EcdsaP256, swtpm (TPM 2.0)",
        rate(|| {
            tpm.sign(&key, &message).unwrap();
        }),
    );

    let now = Timestamp::now();
    let soft_peer = LocalIdentity::create_in(
        Vaults::software(Arc::new(SoftwareVault::new())),
        IdentityOptions::default(),
        now,
    )
    .unwrap();
    let soft_self = LocalIdentity::create_in(
        Vaults::software(Arc::new(SoftwareVault::new())),
        IdentityOptions::default(),
        now,
    )
    .unwrap();
    row(
        "handshake, both in software",
        handshake_rate(&soft_self, &soft_peer),
    );
    let in_token = LocalIdentity::create_in(
        Vaults::new(token.clone(), token.clone()),
        IdentityOptions::default(),
        now,
    )
    .unwrap();
    row(
        "handshake, initiator's static key in SoftHSM2",
        handshake_rate(&in_token, &soft_peer),
    );
    row(
        "handshake, responder's static key in SoftHSM2",
        handshake_rate(&soft_peer, &in_token),
    );
    let _ = token.delete_signing_key(in_token.primary_key());
    let _ = token.delete_signing_key(in_token.static_key());
    let _ = swtpm.kill();
    let _ = swtpm.wait();
}
