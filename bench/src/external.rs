//! The portal row's external peers, run as child processes on loopback: stunnel (one process, a client
//! service and a server service, mutual TLS 1.3) and OpenSSH (a private sshd plus `ssh -N -L`). Each is
//! stopped, by its own process handle, when dropped, and its scratch directory removed.

use crate::peers::BenchResult;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> BenchResult<Self> {
        let dir =
            std::env::temp_dir().join(format!("latchkey-bench-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        Ok(Scratch(dir))
    }

    fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }

    fn write(&self, file: &str, contents: &str) -> BenchResult<PathBuf> {
        let path = self.path(file);
        std::fs::write(&path, contents)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        }
        Ok(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // LATCHKEY_BENCH_KEEP_SCRATCH=1 keeps configurations and logs for debugging a peer's setup.
        if std::env::var_os("LATCHKEY_BENCH_KEEP_SCRATCH").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A child process killed (by its own handle) on drop.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> BenchResult<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Waits until something listens on `port` (a connection that is closed at once; the counting server
/// ignores the empty streams this may cause).
fn wait_listening(port: u16, child: &mut Process, what: &str) -> BenchResult<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Some(status) = child.0.try_wait()? {
            return Err(format!("{what} exited early ({status})").into());
        }
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!("{what} did not listen on port {port} within 10 s").into())
}

fn spawn(program: &str, args: &[&str], log: &Path) -> BenchResult<Process> {
    let log = std::fs::File::create(log)?;
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start {program}: {e} (run `make deps-bench`)"))?;
    Ok(Process(child))
}

/// stunnel: connections to `entry` are carried over mutual TLS 1.3 (ECDSA P-256 certificates from one CA,
/// both verified) to a second stunnel service that connects to the target.
pub struct Stunnel {
    pub entry: SocketAddr,
    _process: Process,
    _scratch: Scratch,
}

impl Stunnel {
    pub fn start(target: SocketAddr) -> BenchResult<Self> {
        let scratch = Scratch::new("stunnel")?;
        let alg = &rcgen::PKCS_ECDSA_P256_SHA256;
        let ca_key = rcgen::KeyPair::generate_for(alg)?;
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        // Distinct subject names: OpenSSL takes a leaf whose subject equals its issuer's for self-signed.
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "latchkey bench CA");
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
        let ca = scratch.write("ca.pem", &ca_cert.pem())?;
        let leaf = |name: &str| -> BenchResult<(PathBuf, PathBuf)> {
            let key = rcgen::KeyPair::generate_for(alg)?;
            let mut params = rcgen::CertificateParams::new(vec![name.to_string()])?;
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, name);
            let cert = params.signed_by(&key, &issuer)?;
            Ok((
                scratch.write(&format!("{name}.pem"), &cert.pem())?,
                scratch.write(&format!("{name}.key"), &key.serialize_pem())?,
            ))
        };
        let (server_cert, server_key) = leaf("server.test")?;
        let (client_cert, client_key) = leaf("client.test")?;
        let (server_port, client_port) = (free_port()?, free_port()?);
        let config = format!(
            "foreground = yes\npid =\ndebug = err\n\
             [server]\naccept = 127.0.0.1:{server_port}\nconnect = {target}\n\
             cert = {sc}\nkey = {sk}\nCAfile = {ca}\nverifyChain = yes\nrequireCert = yes\n\
             sslVersionMin = TLSv1.3\n\
             [client]\nclient = yes\naccept = 127.0.0.1:{client_port}\nconnect = 127.0.0.1:{server_port}\n\
             cert = {cc}\nkey = {ck}\nCAfile = {ca}\nverifyChain = yes\ncheckHost = server.test\n\
             sslVersionMin = TLSv1.3\n",
            sc = server_cert.display(),
            sk = server_key.display(),
            cc = client_cert.display(),
            ck = client_key.display(),
            ca = ca.display(),
        );
        let config = scratch.write("stunnel.conf", &config)?;
        let mut process = spawn(
            "stunnel4",
            &[config.to_str().ok_or("non-UTF-8 temp path")?],
            &scratch.path("stunnel.log"),
        )?;
        wait_listening(server_port, &mut process, "stunnel")?;
        wait_listening(client_port, &mut process, "stunnel")?;
        Ok(Stunnel {
            entry: SocketAddr::from(([127, 0, 0, 1], client_port)),
            _process: process,
            _scratch: scratch,
        })
    }
}

/// `ssh -N -L` through a private sshd on loopback (its own host key, config and authorized key), with
/// OpenSSH's default cipher choice.
pub struct SshTunnel {
    pub entry: SocketAddr,
    _client: Process,
    _server: Process,
    _scratch: Scratch,
}

fn keygen(path: &Path) -> BenchResult<()> {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()?;
    if !status.success() {
        return Err("ssh-keygen failed".into());
    }
    Ok(())
}

impl SshTunnel {
    pub fn start(target: SocketAddr) -> BenchResult<Self> {
        let sshd = "/usr/sbin/sshd";
        if !Path::new(sshd).exists() {
            return Err("sshd not installed (run `make deps-bench`)".into());
        }
        let scratch = Scratch::new("ssh")?;
        let (host_key, client_key) = (scratch.path("host_key"), scratch.path("client_key"));
        keygen(&host_key)?;
        keygen(&client_key)?;
        let public = std::fs::read_to_string(scratch.path("client_key.pub"))?;
        let authorized = scratch.write("authorized_keys", &public)?;
        // sshd refuses to start without its privilege-separation directory.
        std::fs::create_dir_all("/run/sshd")?;
        let (ssh_port, forward_port) = (free_port()?, free_port()?);
        let config = format!(
            "Port {ssh_port}\nListenAddress 127.0.0.1\nHostKey {hk}\nAuthorizedKeysFile {ak}\n\
             PermitRootLogin prohibit-password\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nAllowTcpForwarding yes\n\
             PidFile none\n",
            hk = host_key.display(),
            ak = authorized.display(),
        );
        let config = scratch.write("sshd_config", &config)?;
        let mut server = spawn(
            sshd,
            &[
                "-D",
                "-e",
                "-f",
                config.to_str().ok_or("non-UTF-8 temp path")?,
            ],
            &scratch.path("sshd.log"),
        )?;
        wait_listening(ssh_port, &mut server, "sshd")?;
        let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
        let forward = format!("127.0.0.1:{forward_port}:{target}");
        let port = ssh_port.to_string();
        let mut client = spawn(
            "ssh",
            &[
                "-N",
                "-o",
                "BatchMode=yes",
                "-o",
                "ExitOnForwardFailure=yes",
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "LogLevel=ERROR",
                "-i",
                client_key.to_str().ok_or("non-UTF-8 temp path")?,
                "-p",
                &port,
                "-L",
                &forward,
                &format!("{user}@127.0.0.1"),
            ],
            &scratch.path("ssh.log"),
        )?;
        wait_listening(forward_port, &mut client, "ssh -L")?;
        Ok(SshTunnel {
            entry: SocketAddr::from(([127, 0, 0, 1], forward_port)),
            _client: client,
            _server: server,
            _scratch: scratch,
        })
    }
}
