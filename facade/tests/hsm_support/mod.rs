//! Throwaway hardware for the hardware-vault tests: a SoftHSM2 token directory and swtpm instances, each in
//! a temporary directory of this test process. Nothing outside the temp dirs is touched.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

pub const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
pub const SO_PIN: &str = "5678";
pub const PIN: &str = "123456";

/// The process's SoftHSM2 configuration: a private token directory, `SOFTHSM2_CONF` pointing at it (set
/// before the module is first loaded, since SoftHSM2 reads it at `C_Initialize`).
pub struct SoftHsm {
    pub dir: PathBuf,
    pub conf: PathBuf,
    pub pin_file: PathBuf,
    pub wrong_pin_file: PathBuf,
    _temp: tempfile::TempDir,
}

/// Every token the tests use, made before the module is first loaded (SoftHSM2 scans its token directory
/// at `C_Initialize`; a token made later is seen by the next process).
pub const TOKENS: &[&str] = &[
    "vault-ops",
    "channels",
    "errors",
    "healthy",
    "tpm-gone",
    "threads",
    "bench",
];

pub fn softhsm() -> &'static SoftHsm {
    static HSM: OnceLock<SoftHsm> = OnceLock::new();
    HSM.get_or_init(|| {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().to_path_buf();
        std::fs::create_dir(dir.join("tokens")).unwrap();
        let conf = dir.join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                dir.join("tokens").display()
            ),
        )
        .unwrap();
        std::env::set_var("SOFTHSM2_CONF", &conf);
        let pin_file = dir.join("pin");
        std::fs::write(&pin_file, format!("{PIN}\n")).unwrap();
        let wrong_pin_file = dir.join("wrong-pin");
        std::fs::write(&wrong_pin_file, "000000\n").unwrap();
        let hsm = SoftHsm {
            dir,
            conf,
            pin_file,
            wrong_pin_file,
            _temp: temp,
        };
        for label in TOKENS {
            hsm.init_token(label);
        }
        hsm
    })
}

impl SoftHsm {
    /// The token labelled `label` (one per test, so tests do not see each other's keys).
    pub fn token(&self, label: &str) -> String {
        assert!(TOKENS.contains(&label), "add {label:?} to TOKENS");
        label.to_string()
    }

    fn init_token(&self, label: &str) {
        let out = Command::new("softhsm2-util")
            .env("SOFTHSM2_CONF", &self.conf)
            .args(["--init-token", "--free", "--label", label])
            .args(["--so-pin", SO_PIN, "--pin", PIN])
            .output()
            .expect("softhsm2-util (make deps-hsm installs softhsm2)");
        assert!(
            out.status.success(),
            "softhsm2-util: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The vault spec of token `label`, the PIN read from a file.
    pub fn spec(&self, label: &str) -> String {
        format!(
            "pkcs11:module={MODULE},token={label},pin-file={}",
            self.pin_file.display()
        )
    }

    /// `pkcs11-tool` on token `label` (OpenSC), logged in; stdout.
    pub fn tool(&self, label: &str, args: &[&str]) -> String {
        let out = Command::new("pkcs11-tool")
            .env("SOFTHSM2_CONF", &self.conf)
            .args([
                "--module",
                MODULE,
                "--token-label",
                label,
                "--login",
                "--pin",
                PIN,
            ])
            .args(args)
            .output()
            .expect("pkcs11-tool (make deps-hsm installs opensc)");
        assert!(
            out.status.success(),
            "pkcs11-tool {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

fn free_port_pair() -> u16 {
    loop {
        let a = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = a.local_addr().unwrap().port();
        if port < 65000 && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
}

/// A software TPM 2.0 (swtpm) with its state in a temp dir, listening on loopback; killed on drop.
pub struct Swtpm {
    child: Option<Child>,
    pub port: u16,
    _state: tempfile::TempDir,
}

impl Swtpm {
    pub fn start() -> Swtpm {
        let state = tempfile::tempdir().unwrap();
        let port = free_port_pair();
        let child = Command::new("swtpm")
            .args(["socket", "--tpm2"])
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
            .args(["--flags", "not-need-init,startup-clear"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("swtpm (make deps-hsm installs swtpm)");
        // Ready when it accepts connections.
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        Swtpm {
            child: Some(child),
            port,
            _state: state,
        }
    }

    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    pub fn spec(&self) -> String {
        format!("tpm:{}", self.tcti())
    }

    /// The TPM goes away (the process is killed).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn home(dir: &Path, name: &str) -> Option<String> {
    Some(dir.join(name).to_string_lossy().into_owned())
}
