//! Enrollment and revocation figures (a benchmark, not a test): `cargo run --release -p latchkey-runtime
//! --example enroll_bench [N]`.
//!
//! 1. Durable store transactions: `AuthorityStore::enroll` alone (token use + one-time prekey + request hash
//!    + member, one `BEGIN IMMEDIATE … COMMIT` with `synchronous = FULL`), sequential, N times.
//! 2. Full X3DH enrollments handled by the authority (`Authority::handle_enrollment`: decrypt, verify the
//!    device's history and signature, the store transaction, issue and record the credential), requests
//!    prepared beforehand by devices, sequential.
//! 3. The same over loopback TCP with 16 devices in parallel (`serve_x3dh` + `client::enroll_x3dh`, which
//!    also fetches a bundle per enrollment).
//! 4. Revocation reaching live channels: a machine node with 50 watched channels of members follows the
//!    authority's revocations; each round revokes one member and times until its channel is closed.
//!
//! Prints per-operation rates and latency percentiles.

use latchkey_core::credential::{Attributes, TrustedAuthorities};
use latchkey_core::enroll::{DeviceEnrollment, PrekeyBundle};
use latchkey_core::Timestamp;
use latchkey_runtime::authority::store::{
    AuthorityStore, Enrollment, NewPrekey, NewToken, PrekeyKind, Revoked, SqliteAuthorityStore,
};
use latchkey_runtime::authority::{client, Authority, AuthorityOptions, Membership};
use latchkey_runtime::transport::tcp::{self, TcpOptions};
use latchkey_runtime::{
    create_channel, create_listener, Accepts, ChannelOptions, LocalIdentity, Node, Route,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn percentiles(label: &str, mut v: Vec<Duration>, total: Duration) {
    v.sort();
    let p = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)];
    println!(
        "{label}: n={} {:.0}/s  p50={:?} p99={:?} max={:?}",
        v.len(),
        v.len() as f64 / total.as_secs_f64(),
        p(0.50),
        p(0.99),
        v[v.len() - 1]
    );
}

/// This thread's CPU time (user + system).
fn thread_cpu() -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec; the clock id is valid on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

fn store_only(n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SqliteAuthorityStore::open(&dir.path().join("a.sqlite3")).unwrap();
    let now = 1_800_000_000;
    store
        .add_token(
            &NewToken {
                secret_hash: [1; 32],
                attributes: Default::default(),
                expires_at: now + 3600,
                uses: n as u32,
            },
            now,
        )
        .unwrap();
    let keys: Vec<NewPrekey> = (0..n)
        .map(|i| {
            let mut public = [0u8; 32];
            public[..8].copy_from_slice(&(i as u64).to_be_bytes());
            NewPrekey {
                public,
                secret: zeroize::Zeroizing::new([7; 32]),
                signature: vec![],
                created_at: now,
            }
        })
        .collect();
    let ids = store.add_prekeys(PrekeyKind::OneTime, &keys).unwrap();
    let mut lat = Vec::with_capacity(n);
    let start = Instant::now();
    for (i, id) in ids.iter().enumerate() {
        let identifier = format!("device-{i}");
        let mut h = [0u8; 32];
        h[..8].copy_from_slice(&(i as u64).to_be_bytes());
        let t = Instant::now();
        store
            .enroll(&Enrollment {
                token_hash: [1; 32],
                one_time_prekey: Some(*id),
                message_hash: h,
                identifier: &identifier,
                history: &[0u8; 300],
                history_hash: [2; 32],
                credential: None,
                now,
            })
            .unwrap()
            .unwrap();
        lat.push(t.elapsed());
    }
    percentiles("store transaction (durable)", lat, start.elapsed());
}

fn x3dh_in_process(n: usize, batch: usize) {
    let dir = tempfile::tempdir().unwrap();
    let id = LocalIdentity::create().unwrap();
    let a = Authority::open(
        id,
        &dir.path().join("a.sqlite3"),
        AuthorityOptions::default(),
    )
    .unwrap();
    let token = a.create_token(&Attributes::new(), 3600, n as u32).unwrap();
    let bundle: PrekeyBundle = a.prekey_bundle().unwrap();
    let provider = latchkey_core::crypto::default_provider();
    // Requests to the signed prekey only (every one does the full work; none races for a one-time key).
    let requests: Vec<Vec<u8>> = (0..n)
        .map(|_| {
            let device = LocalIdentity::create().unwrap();
            let eph = latchkey_core::crypto::generate_secret(provider).unwrap();
            DeviceEnrollment::start_with(
                &token,
                &bundle,
                &device,
                provider,
                Timestamp::now(),
                None,
                eph,
            )
            .unwrap()
            .1
        })
        .collect();
    let mut lat = Vec::with_capacity(n);
    let cpu0 = thread_cpu();
    let start = Instant::now();
    for chunk in requests.chunks(batch) {
        let t = Instant::now();
        let results = a.handle_enrollments(chunk);
        assert!(results.iter().all(|r| r.is_ok()));
        // Each request in the batch is acknowledged when the batch commits.
        let e = t.elapsed();
        lat.extend(std::iter::repeat_n(e, chunk.len()));
    }
    percentiles(
        &format!("X3DH enrollments handled, durable, {batch} per commit"),
        lat,
        start.elapsed(),
    );
    let cpu = thread_cpu() - cpu0;
    println!(
        "  CPU time of the handling thread: {:?} per enrollment (one core's capacity: {:.0}/s); the rest \
         is waiting (fsync, other processes on this shared machine)",
        cpu / n as u32,
        n as f64 / cpu.as_secs_f64()
    );
}

fn x3dh_over_tcp(n: usize, parallel: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let a = Authority::open(
            LocalIdentity::create().unwrap(),
            &dir.path().join("a.sqlite3"),
            AuthorityOptions::default(),
        )
        .unwrap();
        let node = Node::new("authority");
        a.serve_x3dh(&node, "enroll".into()).unwrap();
        let tcp = tcp::listen(&node, "127.0.0.1:0", TcpOptions::default())
            .await
            .unwrap();
        let addr = tcp.local_addr.to_string();
        let token = a.create_token(&Attributes::new(), 3600, n as u32).unwrap();
        let devices: Vec<LocalIdentity> =
            (0..n).map(|_| LocalIdentity::create().unwrap()).collect();
        let lat = Arc::new(std::sync::Mutex::new(Vec::new()));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for chunk in devices.chunks(n.div_ceil(parallel)) {
            let (chunk, addr, token, lat) =
                (chunk.to_vec(), addr.clone(), token.clone(), lat.clone());
            tasks.push(tokio::spawn(async move {
                let dnode = Node::new("device");
                let link = tcp::connect(&dnode, &addr, TcpOptions::default())
                    .await
                    .unwrap();
                let flow = dnode.flow_of(&link).unwrap();
                let route = Route::from_addresses([link, "enroll".into()]);
                for d in chunk {
                    let t = Instant::now();
                    if let Err(e) =
                        client::enroll_x3dh(&dnode, route.clone(), flow, &token, &d).await
                    {
                        eprintln!("enrollment failed: {e:?}");
                        continue;
                    }
                    lat.lock().unwrap().push(t.elapsed());
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let v = lat.lock().unwrap().clone();
        percentiles(
            &format!("X3DH enrollment over loopback TCP, {parallel} devices in parallel"),
            v,
            start.elapsed(),
        );
    });
}

fn revocation(rounds: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let aid = LocalIdentity::create().unwrap();
        let a = Authority::open(
            aid.clone(),
            &dir.path().join("a.sqlite3"),
            Default::default(),
        )
        .unwrap();
        let anode = Node::new("authority");
        let al = create_listener(
            &anode,
            &aid,
            "api".into(),
            ChannelOptions::default().trust_any(),
        )
        .unwrap();
        a.serve(&anode, "authority".into(), Accepts::flow(al.flow))
            .unwrap();
        let atcp = tcp::listen(&anode, "127.0.0.1:0", TcpOptions::default())
            .await
            .unwrap();
        let aaddr = atcp.local_addr.to_string();

        let membership = Membership::new(TrustedAuthorities::new().with(aid.history().clone()));
        let mid = LocalIdentity::create().unwrap();
        let mnode = Node::new("machine");
        let mut ml = create_listener(
            &mnode,
            &mid,
            "api".into(),
            ChannelOptions::default().with_trust(membership.trust(None)),
        )
        .unwrap();
        let mtcp = tcp::listen(&mnode, "127.0.0.1:0", TcpOptions::default())
            .await
            .unwrap();
        let maddr = mtcp.local_addr.to_string();
        let m = membership.clone();
        tokio::spawn(async move {
            while let Some(c) = ml.accepted().await {
                m.watch(c);
            }
        });
        let link = tcp::connect(&mnode, &aaddr, TcpOptions::default())
            .await
            .unwrap();
        let to_a = create_channel(
            &mnode,
            &mid,
            Route::from_addresses([link, "api".into()]),
            ChannelOptions::default().trust_any(),
        )
        .await
        .unwrap();
        client::follow_revocations(
            &mnode,
            &to_a,
            &"authority".into(),
            membership.clone(),
            Duration::from_secs(60),
        )
        .await
        .unwrap();

        let token = a
            .create_token(&Attributes::new(), 3600, rounds as u32)
            .unwrap();
        let mut members = Vec::new();
        for _ in 0..rounds {
            let d = LocalIdentity::create().unwrap();
            let dn = Node::new("member");
            let l = tcp::connect(&dn, &aaddr, TcpOptions::default())
                .await
                .unwrap();
            let c = create_channel(
                &dn,
                &d,
                Route::from_addresses([l, "api".into()]),
                ChannelOptions::default().trust_any(),
            )
            .await
            .unwrap();
            let cred = client::enroll(&dn, &c, &"authority".into(), &token, d.history())
                .await
                .unwrap();
            let d = d.with_credentials(vec![latchkey_core::wire::Encode::to_bytes(&cred)]);
            let l = tcp::connect(&dn, &maddr, TcpOptions::default())
                .await
                .unwrap();
            let live = create_channel(
                &dn,
                &d,
                Route::from_addresses([l, "api".into()]),
                ChannelOptions::default().trust_any(),
            )
            .await
            .unwrap();
            members.push((d, dn, live));
        }
        let mut lat = Vec::new();
        let start = Instant::now();
        for (d, _, live) in &members {
            let t = Instant::now();
            a.revoke(&[Revoked::Identifier(d.identifier().to_string())])
                .unwrap();
            tokio::time::timeout(Duration::from_secs(10), live.closed())
                .await
                .unwrap();
            lat.push(t.elapsed());
        }
        percentiles(
            &format!(
                "revocation -> live channel closed ({} live channels at start)",
                members.len()
            ),
            lat,
            start.elapsed(),
        );
        drop((atcp, mtcp));
    });
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    if std::env::var_os("ONLY_TCP").is_none() {
        store_only(n);
        x3dh_in_process(n.min(500), 1);
        x3dh_in_process(n, 64);
    }
    x3dh_over_tcp(n / 2, 16);
    revocation(50);
}
