//! The authority store on real SQLite files: atomic consumption of tokens and one-time prekeys, racing
//! consumers in separate connections, a `kill -9` in the middle of a burst, migrations.

use latchkey_runtime::authority::store::*;
use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::sync::{Arc, Barrier};
use zeroize::Zeroizing;

const NOW: i64 = 1_800_000_000;

fn token(seed: u8, uses: u32, expires_at: i64) -> NewToken {
    let mut attributes = Attributes::new();
    attributes.insert("role".into(), format!("device-{seed}"));
    NewToken {
        secret_hash: [seed; 32],
        attributes,
        expires_at,
        uses,
    }
}

fn prekeys(n: usize, salt: u8) -> Vec<NewPrekey> {
    (0..n)
        .map(|i| {
            let mut public = [salt; 32];
            public[..8].copy_from_slice(&(i as u64).to_be_bytes());
            NewPrekey {
                public,
                secret: Zeroizing::new([i as u8 ^ 0x5a; 32]),
                signature: Vec::new(),
                created_at: NOW,
            }
        })
        .collect()
}

/// An enrollment of device `n` with token `seed`, message hash derived from `msg`.
fn enrollment<'a>(
    seed: u8,
    identifier: &'a str,
    msg: u64,
    prekey: Option<i64>,
    now: i64,
) -> Enrollment<'a> {
    let mut message_hash = [0u8; 32];
    message_hash[..8].copy_from_slice(&msg.to_be_bytes());
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&msg.to_be_bytes());
    Enrollment {
        token_hash: [seed; 32],
        one_time_prekey: prekey,
        message_hash,
        identifier,
        history: b"history",
        history_hash: [7; 32],
        credential: Some(IssuedCredential {
            id,
            bytes: b"credential",
            expires_at: now + 3600,
        }),
        now,
    }
}

fn open(dir: &tempfile::TempDir) -> SqliteAuthorityStore {
    SqliteAuthorityStore::open(&dir.path().join("authority.sqlite3")).unwrap()
}

#[test]
fn a_single_use_token_enrolls_once_and_refusals_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(&dir);
    store.add_token(&token(1, 1, NOW + 600), NOW).unwrap();
    store.add_token(&token(2, 5, NOW + 600), NOW).unwrap();
    let ids = store
        .add_prekeys(PrekeyKind::OneTime, &prekeys(3, 9))
        .unwrap();
    assert_eq!(store.count_one_time_prekeys().unwrap(), 3);

    let m = store
        .enroll(&enrollment(1, "I1", 1, Some(ids[0]), NOW))
        .unwrap()
        .unwrap();
    assert_eq!(
        m.attributes.get("role").map(String::as_str),
        Some("device-1")
    );
    assert_eq!(store.member("I1").unwrap().unwrap(), m);
    assert_eq!(store.token(&[1; 32]).unwrap().unwrap().uses_left, 0);
    // The one-time prekey is consumed and its secret erased.
    assert!(store.prekey(PrekeyKind::OneTime, ids[0]).unwrap().is_none());
    assert_eq!(store.count_one_time_prekeys().unwrap(), 2);

    // The same token again, for another device: used up.
    let refused = store
        .enroll(&enrollment(1, "I2", 2, Some(ids[1]), NOW))
        .unwrap();
    assert_eq!(refused, Err(EnrollRefusal::TokenUsedUp));
    // The refused attempt did not consume its prekey.
    assert!(store.prekey(PrekeyKind::OneTime, ids[1]).unwrap().is_some());
    // The same message again: a replay.
    let replay = store.enroll(&enrollment(2, "I3", 1, None, NOW)).unwrap();
    assert_eq!(replay, Err(EnrollRefusal::Replay));
    // A consumed one-time prekey, with a good token: refused, and the token keeps its uses.
    let reused = store
        .enroll(&enrollment(2, "I3", 3, Some(ids[0]), NOW))
        .unwrap();
    assert_eq!(reused, Err(EnrollRefusal::PrekeyUnavailable));
    assert_eq!(store.token(&[2; 32]).unwrap().unwrap().uses_left, 5);
    assert!(store.member("I3").unwrap().is_none());
    // Unknown, expired, already a member.
    assert_eq!(
        store.enroll(&enrollment(3, "I3", 4, None, NOW)).unwrap(),
        Err(EnrollRefusal::UnknownToken)
    );
    assert_eq!(
        store
            .enroll(&enrollment(2, "I3", 5, None, NOW + 600))
            .unwrap(),
        Err(EnrollRefusal::TokenExpired)
    );
    assert_eq!(
        store.enroll(&enrollment(2, "I1", 6, None, NOW)).unwrap(),
        Err(EnrollRefusal::AlreadyMember)
    );
    assert_eq!(store.members().unwrap().len(), 1);
    store.integrity_check().unwrap();
}

#[test]
fn a_hundred_connections_racing_for_one_single_use_token_make_exactly_one_member() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("authority.sqlite3");
    {
        let mut store = SqliteAuthorityStore::open(&path).unwrap();
        store.add_token(&token(1, 1, NOW + 600), NOW).unwrap();
    }
    let barrier = Arc::new(Barrier::new(100));
    let threads: Vec<_> = (0..100u64)
        .map(|i| {
            let (path, barrier) = (path.clone(), barrier.clone());
            std::thread::spawn(move || {
                // Each consumer has its own connection, as separate processes would.
                let mut store = SqliteAuthorityStore::open(&path).unwrap();
                let identifier = format!("device-{i}");
                barrier.wait();
                store
                    .enroll(&enrollment(1, &identifier, i, None, NOW))
                    .unwrap()
            })
        })
        .collect();
    let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let wins = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(wins, 1, "{results:?}");
    assert!(results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .all(|e| *e == EnrollRefusal::TokenUsedUp));
    let store = SqliteAuthorityStore::open(&path).unwrap();
    assert_eq!(store.members().unwrap().len(), 1);
    assert_eq!(store.token(&[1; 32]).unwrap().unwrap().uses_left, 0);
    store.integrity_check().unwrap();
}

#[test]
fn a_hundred_connections_racing_for_one_one_time_prekey_consume_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("authority.sqlite3");
    let id = {
        let mut store = SqliteAuthorityStore::open(&path).unwrap();
        store.add_token(&token(1, 1000, NOW + 600), NOW).unwrap();
        store
            .add_prekeys(PrekeyKind::OneTime, &prekeys(1, 3))
            .unwrap()[0]
    };
    let barrier = Arc::new(Barrier::new(100));
    let threads: Vec<_> = (0..100u64)
        .map(|i| {
            let (path, barrier) = (path.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mut store = SqliteAuthorityStore::open(&path).unwrap();
                let identifier = format!("device-{i}");
                barrier.wait();
                store
                    .enroll(&enrollment(1, &identifier, i, Some(id), NOW))
                    .unwrap()
            })
        })
        .collect();
    let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    let store = SqliteAuthorityStore::open(&path).unwrap();
    assert_eq!(store.token(&[1; 32]).unwrap().unwrap().uses_left, 999);
    assert_eq!(store.count_one_time_prekeys().unwrap(), 0);
}

/// The child side of the crash test: enrolls until killed, printing each identifier after its commit.
fn crash_child(path: &str) {
    let mut store = SqliteAuthorityStore::open(std::path::Path::new(path)).unwrap();
    let ids = store
        .add_prekeys(PrekeyKind::OneTime, &prekeys(100_000, 4))
        .unwrap();
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready").unwrap();
    for i in 0..100_000u64 {
        // Three tokens of 5_000 uses; each enrollment takes the next one-time prekey.
        let seed = 1 + (i % 3) as u8;
        let identifier = format!("device-{i}");
        let r = store
            .enroll(&enrollment(
                seed,
                &identifier,
                i,
                Some(ids[i as usize]),
                NOW,
            ))
            .unwrap();
        if r.is_ok() {
            writeln!(out, "{identifier}").unwrap();
            out.flush().unwrap();
        }
    }
}

#[test]
fn kill_9_during_a_burst_loses_no_acknowledged_member_and_uses_no_token_twice() {
    if let Ok(path) = std::env::var("LATCHKEY_CRASH_CHILD") {
        crash_child(&path);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("authority.sqlite3");
    {
        let mut store = SqliteAuthorityStore::open(&path).unwrap();
        for seed in 1..=3 {
            store
                .add_token(&token(seed, 5_000, NOW + 600), NOW)
                .unwrap();
        }
    }
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "kill_9_during_a_burst_loses_no_acknowledged_member_and_uses_no_token_twice",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("LATCHKEY_CRASH_CHILD", &path)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acknowledged = HashSet::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if line.starts_with("device-") {
            acknowledged.insert(line);
            if acknowledged.len() == 300 {
                break;
            }
        }
    }
    // SIGKILL in the middle of the burst: the child is enrolling as fast as it can.
    child.kill().unwrap();
    for line in lines.map_while(Result::ok) {
        if line.starts_with("device-") {
            acknowledged.insert(line);
        }
    }
    child.wait().unwrap();
    assert!(acknowledged.len() >= 300);

    let store = SqliteAuthorityStore::open(&path).unwrap();
    store.integrity_check().unwrap();
    let members = store.members().unwrap();
    let present: HashSet<_> = members.iter().map(|m| m.identifier.clone()).collect();
    let lost: Vec<_> = acknowledged.difference(&present).collect();
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    // Every use of a token is one member, and every member used one one-time prekey.
    let used: u32 = (1..=3)
        .map(|seed| 5_000 - store.token(&[seed; 32]).unwrap().unwrap().uses_left)
        .sum();
    assert_eq!(used as usize, members.len());
    assert_eq!(
        store.count_one_time_prekeys().unwrap(),
        100_000 - members.len()
    );
    eprintln!(
        "killed after {} acknowledged; {} members on disk",
        acknowledged.len(),
        members.len()
    );
}

#[test]
fn the_schema_is_versioned_and_a_newer_store_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("authority.sqlite3");
    {
        let mut store = SqliteAuthorityStore::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        store
            .set_policy("telemetry", "(= subject.role \"engineer\")", NOW)
            .unwrap();
        assert_eq!(
            store
                .revoke(&[Revoked::Identifier("I1".into())], NOW)
                .unwrap(),
            1
        );
        assert_eq!(
            store
                .revoke(
                    &[
                        Revoked::Credential([1; 16]),
                        Revoked::Identifier("I1".into())
                    ],
                    NOW
                )
                .unwrap(),
            2
        );
        store.put_revocation_list(2, b"signed list").unwrap();
    }
    {
        // Reopened: migrations are not applied twice, the data is there.
        let store = SqliteAuthorityStore::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        assert_eq!(
            store.policy("telemetry").unwrap().as_deref(),
            Some("(= subject.role \"engineer\")")
        );
        let state = store.revocations().unwrap();
        assert_eq!(state.sequence, 2);
        assert_eq!(state.entries.len(), 2);
        assert_eq!(
            store.latest_revocation_list().unwrap(),
            Some((2, b"signed list".to_vec()))
        );
    }
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute(
            "INSERT INTO schema_version (version, applied_at) VALUES (99, 0)",
            [],
        )
        .unwrap();
    let e = SqliteAuthorityStore::open(&path).unwrap_err();
    assert!(e.to_string().contains("schema version 99"), "{e}");
}
