//! A Rust peer for cross-language tests and the C device: a secure channel straight over one TCP
//! connection ("direct TCP", see docs/PROTOCOL.md): every message — the three handshake messages, then
//! transport frames — is sent as a 4-byte big-endian length followed by that many bytes.
//!
//! ```text
//! direct_peer listen 127.0.0.1:0 [--suite chachapoly|aesgcm] (--trust lk…... | --trust-any)
//!     prints "LISTENING <addr> <identifier>", then serves connections one per thread: answers each
//!     message with "echo: " + message. Runs until killed.
//! direct_peer connect <addr> [--suite …] (--trust lk…... | --trust-any) <message>...
//!     prints "PEER <identifier>" then "REPLY <text>" per message; exits 0 on success, 1 on any error.
//! ```
//!
//! Trust is never implied: name the peers with `--trust` (repeatable) or accept any identity with
//! `--trust-any`. With neither, or both, it prints a usage error and exits 2.

use latchkey_facade::{CipherSuite, Identity, IdentityOptions, Role, Trust, Vault};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

/// Largest message on a direct TCP stream: a full transport frame.
const MAX_MESSAGE: usize = latchkey_facade::MAX_PLAINTEXT_LEN + latchkey_facade::FRAME_OVERHEAD;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn write_message(stream: &mut TcpStream, message: &[u8]) -> Result<(), BoxError> {
    stream.write_all(&(message.len() as u32).to_be_bytes())?;
    stream.write_all(message)?;
    Ok(())
}

fn read_message(stream: &mut TcpStream) -> Result<Option<Vec<u8>>, BoxError> {
    let mut len = [0u8; 4];
    match stream.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_MESSAGE {
        return Err(format!("message of {len} bytes exceeds {MAX_MESSAGE}").into());
    }
    let mut message = vec![0u8; len];
    stream.read_exact(&mut message)?;
    Ok(Some(message))
}

const USAGE: &str = "usage: direct_peer listen <addr> [--suite chachapoly|aesgcm] (--trust ID... | --trust-any)\n       \
                     direct_peer connect <addr> [--suite chachapoly|aesgcm] (--trust ID... | --trust-any) <message>...";

/// A mistake on the command line: reported with the usage text, exit status 2.
#[derive(Debug)]
struct UsageError(String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

fn usage(message: impl Into<String>) -> BoxError {
    Box::new(UsageError(message.into()))
}

struct Options {
    suite: CipherSuite,
    trust: Trust,
    rest: Vec<String>,
}

fn parse_options(args: &[String]) -> Result<Options, BoxError> {
    let mut suite = CipherSuite::ChaChaPoly;
    let mut trusted: Vec<String> = vec![];
    let mut trust_any = false;
    let mut rest = vec![];
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--suite" => {
                suite = match iter.next().map(String::as_str) {
                    Some("chachapoly") => CipherSuite::ChaChaPoly,
                    Some("aesgcm") => CipherSuite::AesGcm,
                    other => return Err(usage(format!("unknown suite {other:?}"))),
                }
            }
            "--trust" => {
                let id = iter
                    .next()
                    .ok_or_else(|| usage("--trust needs an identifier"))?;
                trusted.push(id.clone());
            }
            "--trust-any" => trust_any = true,
            _ => rest.push(arg.clone()),
        }
    }
    let trust = match (trusted.is_empty(), trust_any) {
        (false, false) => Trust::Identifiers(trusted),
        (true, true) => {
            eprintln!("direct_peer: warning: --trust-any: any peer that proves an identity is accepted");
            Trust::AnyIdentity
        }
        (false, true) => return Err(usage("give either --trust ID... or --trust-any, not both")),
        (true, false) => {
            return Err(usage(
                "no trust given: name the peers with --trust ID... or accept any identity with --trust-any",
            ))
        }
    };
    Ok(Options { suite, trust, rest })
}

fn handshake(
    stream: &mut TcpStream,
    identity: &Identity,
    role: Role,
    options: &Options,
) -> Result<latchkey_facade::Channel, BoxError> {
    let mut session = latchkey_facade::HandshakeSession::new(
        identity,
        role,
        options.suite,
        &options.trust,
        None,
    )?;
    if role == Role::Initiator {
        let m1 = session.step(None)?.ok_or("no first message")?;
        write_message(stream, &m1)?;
    }
    while !session.is_finished() {
        let incoming = read_message(stream)?.ok_or("connection closed during handshake")?;
        if let Some(reply) = session.step(Some(&incoming))? {
            write_message(stream, &reply)?;
        }
    }
    Ok(session.into_channel()?)
}

fn serve(mut stream: TcpStream, identity: Identity, options: &Options) -> Result<(), BoxError> {
    let mut channel = handshake(&mut stream, &identity, Role::Responder, options)?;
    eprintln!("direct_peer: channel with {}", channel.peer_identifier());
    while let Some(frame) = read_message(&mut stream)? {
        let message = channel.decrypt(&frame)?;
        let mut reply = b"echo: ".to_vec();
        reply.extend_from_slice(&message);
        write_message(&mut stream, &channel.encrypt(&reply)?)?;
    }
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("listen") => listen(&args[1..]),
        Some("connect") => connect(&args[1..]),
        _ => Err(usage("expected listen or connect")),
    };
    if let Err(e) = result {
        if e.downcast_ref::<UsageError>().is_some() {
            eprintln!("direct_peer: {e}\n{USAGE}");
            std::process::exit(2);
        }
        eprintln!("direct_peer: error: {e}");
        std::process::exit(1);
    }
}

fn listen(args: &[String]) -> Result<(), BoxError> {
    let options = std::sync::Arc::new(parse_options(args)?);
    let addr = options
        .rest
        .first()
        .ok_or_else(|| usage("listen needs an address"))?;
    let identity = Identity::create(&Vault::new(), IdentityOptions::default(), None)?;
    let listener = TcpListener::bind(addr)?;
    println!(
        "LISTENING {} {}",
        listener.local_addr()?,
        identity.identifier()
    );
    std::io::stdout().flush()?;
    for stream in listener.incoming() {
        let stream = stream?;
        let identity = identity.clone();
        let options = options.clone();
        std::thread::spawn(move || {
            if let Err(e) = serve(stream, identity, &options) {
                eprintln!("direct_peer: connection error: {e}");
            }
        });
    }
    Ok(())
}

fn connect(args: &[String]) -> Result<(), BoxError> {
    let options = parse_options(args)?;
    let (addr, messages) = options
        .rest
        .split_first()
        .ok_or_else(|| usage("connect needs an address"))?;
    let identity = Identity::create(&Vault::new(), IdentityOptions::default(), None)?;
    let mut stream = TcpStream::connect(addr)?;
    let mut channel = handshake(&mut stream, &identity, Role::Initiator, &options)?;
    println!("PEER {}", channel.peer_identifier());
    let mut stdout = std::io::stdout().lock();
    for message in messages {
        write_message(&mut stream, &channel.encrypt(message.as_bytes())?)?;
        let frame = read_message(&mut stream)?.ok_or("connection closed")?;
        writeln!(
            stdout,
            "REPLY {}",
            String::from_utf8_lossy(&channel.decrypt(&frame)?)
        )?;
    }
    Ok(())
}
