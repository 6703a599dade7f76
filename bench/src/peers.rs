//! The peers we compare with: snow (bare Noise XX) and rustls (TLS 1.3 with client certificates), set up
//! once so that each timed operation is exactly one handshake or one record round trip.

use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use rustls::{
    ClientConfig, ClientConnection, Connection, RootCertStore, ServerConfig, ServerConnection,
};
use std::io::{Read, Write};
use std::sync::Arc;

pub type BenchResult<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Which snow resolver.
#[derive(Debug, Clone, Copy)]
pub enum SnowResolver {
    Default,
    /// ring for AEAD and hashing; snow's ring resolver has no X25519, so DH falls back to the default one.
    Ring,
}

impl SnowResolver {
    pub fn label(self) -> &'static str {
        match self {
            SnowResolver::Default => "snow (default resolver)",
            SnowResolver::Ring => "snow (ring resolver)",
        }
    }
}

pub struct Snow {
    params: snow::params::NoiseParams,
    resolver: SnowResolver,
    initiator_key: Vec<u8>,
    responder_key: Vec<u8>,
}

impl Snow {
    pub fn new(protocol: &str, resolver: SnowResolver) -> BenchResult<Self> {
        let params: snow::params::NoiseParams = protocol.parse()?;
        let builder = snow::Builder::new(params.clone());
        Ok(Snow {
            initiator_key: builder.generate_keypair()?.private,
            responder_key: builder.generate_keypair()?.private,
            params,
            resolver,
        })
    }

    fn builder<'a>(&self, key: &'a [u8]) -> BenchResult<snow::Builder<'a>> {
        let builder = match self.resolver {
            SnowResolver::Default => snow::Builder::new(self.params.clone()),
            SnowResolver::Ring => snow::Builder::with_resolver(
                self.params.clone(),
                Box::new(snow::resolvers::FallbackResolver::new(
                    Box::new(snow::resolvers::RingResolver),
                    Box::new(snow::resolvers::DefaultResolver),
                )),
            ),
        };
        Ok(builder.local_private_key(key)?)
    }

    /// One full XX handshake with empty payloads, both sides, then both transport states.
    pub fn handshake(&self) -> BenchResult<(snow::TransportState, snow::TransportState)> {
        let mut i = self.builder(&self.initiator_key)?.build_initiator()?;
        let mut r = self.builder(&self.responder_key)?.build_responder()?;
        let mut msg = [0u8; 256];
        let mut payload = [0u8; 256];
        let n = i.write_message(&[], &mut msg)?;
        r.read_message(&msg[..n], &mut payload)?;
        let n = r.write_message(&[], &mut msg)?;
        i.read_message(&msg[..n], &mut payload)?;
        let n = i.write_message(&[], &mut msg)?;
        r.read_message(&msg[..n], &mut payload)?;
        Ok((i.into_transport_mode()?, r.into_transport_mode()?))
    }
}

/// rustls client and server configurations for mutual TLS 1.3 with Ed25519 certificates from one CA, no
/// resumption and no tickets, so every handshake is a full one.
pub struct Tls {
    client: Arc<ClientConfig>,
    server: Arc<ServerConfig>,
}

/// Which rustls crypto provider.
#[derive(Debug, Clone, Copy)]
pub enum TlsProvider {
    Ring,
    /// rustls's default provider.
    AwsLc,
}

/// The TLS 1.3 suite to allow (the handshake rows allow the provider's default list).
#[derive(Debug, Clone, Copy)]
pub enum TlsSuite {
    Default,
    ChaCha20Poly1305,
    Aes256Gcm,
}

impl Tls {
    /// rustls with ring.
    pub fn new(suite: TlsSuite) -> BenchResult<Self> {
        Self::with_provider(suite, TlsProvider::Ring)
    }

    pub fn with_provider(suite: TlsSuite, which: TlsProvider) -> BenchResult<Self> {
        let mut provider = match which {
            TlsProvider::Ring => rustls::crypto::ring::default_provider(),
            TlsProvider::AwsLc => rustls::crypto::aws_lc_rs::default_provider(),
        };
        let (chacha, aes) = match which {
            TlsProvider::Ring => (
                rustls::crypto::ring::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
                rustls::crypto::ring::cipher_suite::TLS13_AES_256_GCM_SHA384,
            ),
            TlsProvider::AwsLc => (
                rustls::crypto::aws_lc_rs::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
                rustls::crypto::aws_lc_rs::cipher_suite::TLS13_AES_256_GCM_SHA384,
            ),
        };
        match suite {
            TlsSuite::Default => {}
            TlsSuite::ChaCha20Poly1305 => provider.cipher_suites = vec![chacha],
            TlsSuite::Aes256Gcm => provider.cipher_suites = vec![aes],
        }
        let provider: Arc<CryptoProvider> = Arc::new(provider);

        let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)?;
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
        let leaf = |name: &str| -> BenchResult<(CertificateDer<'static>, PrivateKeyDer<'static>)> {
            let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)?;
            let cert =
                rcgen::CertificateParams::new(vec![name.to_string()])?.signed_by(&key, &issuer)?;
            Ok((
                cert.der().clone(),
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            ))
        };
        let (server_cert, server_key) = leaf("server.test")?;
        let (client_cert, client_key) = leaf("client.test")?;
        let mut roots = RootCertStore::empty();
        roots.add(ca_cert.der().clone())?;
        let roots = Arc::new(roots);

        let verifier =
            WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone()).build()?;
        let mut server = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![server_cert], server_key)?;
        server.session_storage = Arc::new(NoServerSessionStorage {});
        server.send_tls13_tickets = 0;

        let mut client = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(roots)
            .with_client_auth_cert(vec![client_cert], client_key)?;
        client.resumption = Resumption::disabled();
        Ok(Tls {
            client: Arc::new(client),
            server: Arc::new(server),
        })
    }

    /// One full mutually authenticated handshake, in memory, both sides in this thread.
    pub fn handshake(&self, buf: &mut Vec<u8>) -> BenchResult<(Connection, Connection)> {
        let mut client = Connection::from(ClientConnection::new(
            self.client.clone(),
            ServerName::try_from("server.test")?,
        )?);
        let mut server = Connection::from(ServerConnection::new(self.server.clone())?);
        while client.is_handshaking()
            || server.is_handshaking()
            || client.wants_write()
            || server.wants_write()
        {
            transfer(&mut client, &mut server, buf)?;
            transfer(&mut server, &mut client, buf)?;
        }
        Ok((client, server))
    }
}

/// Moves every pending TLS byte from `from` to `to` and lets `to` process it.
pub fn transfer(from: &mut Connection, to: &mut Connection, buf: &mut Vec<u8>) -> BenchResult<()> {
    buf.clear();
    while from.wants_write() {
        from.write_tls(buf)?;
    }
    let mut pending = &buf[..];
    while !pending.is_empty() {
        to.read_tls(&mut pending)?;
        to.process_new_packets()?;
    }
    Ok(())
}

/// Application data through the connection objects: `from` encrypts `data`, `to` decrypts it into `out`.
/// rustls holds at most 16 KiB of received plaintext, so plaintext is drained as records are processed.
pub fn tls_round(
    from: &mut Connection,
    to: &mut Connection,
    data: &[u8],
    out: &mut [u8],
    buf: &mut Vec<u8>,
) -> BenchResult<()> {
    from.writer().write_all(data)?;
    buf.clear();
    while from.wants_write() {
        from.write_tls(buf)?;
    }
    let mut pending = &buf[..];
    let mut got = 0;
    while !pending.is_empty() {
        to.read_tls(&mut pending)?;
        to.process_new_packets()?;
        got += read_available(to, &mut out[got..data.len()])?;
    }
    if got != data.len() {
        return Err(format!("rustls delivered {got} of {} bytes", data.len()).into());
    }
    Ok(())
}

fn read_available(conn: &mut Connection, out: &mut [u8]) -> BenchResult<usize> {
    let mut got = 0;
    while got < out.len() {
        match conn.reader().read(&mut out[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(got)
}
