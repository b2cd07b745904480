//! Bundles: encoding, every kind of damage, and the merge laws on real and random profiles.

use super::*;
use crate::model::{Model, Settings as ModelSettings};
use proptest::prelude::*;

const KEY: ProfileKey = ProfileKey::file(8, 1);

/// System-call numbers of an ADFA-LD training trace in the repository.
fn adfa(name: &str) -> Vec<i64> {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/replay/adfa/Training_Data_Master/"
    );
    std::fs::read_to_string(format!("{dir}{name}"))
        .unwrap()
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect()
}

/// The profile the pH model learns from running `traces` (one process each) as `exe`.
fn learned(exe: &str, traces: &[&str]) -> Profile {
    let mut m = Model::new(ModelSettings::default());
    for (i, t) in traces.iter().enumerate() {
        let tid = 100 + i as u32;
        m.exec(tid, KEY, 0);
        for nr in adfa(t) {
            m.syscall(tid, nr, 1);
        }
        m.exit(tid, 2);
    }
    let mut p = m.profile(KEY).unwrap();
    p.exe = exe.into();
    // The same program's bytes, wherever it is installed.
    let name = Path::new(exe).file_name().unwrap().to_str().unwrap();
    p.identity = Some(Identity::exe(Digest::of(name.as_bytes())));
    p
}

fn source(host: &str) -> Source {
    Source {
        host: host.into(),
        exported: "2026-12-01T00:00:00Z".into(),
        settings: Learned::from(&Settings::default()),
    }
}

/// Three bundles from three "hosts": the same program trained on different traces, plus one
/// program only host b has, one of them normal.
fn bundles() -> [Body; 3] {
    let a = learned("/usr/bin/x", &["UTD-0001.txt"]);
    let b = learned("/usr/bin/x", &["UTD-0003.txt", "more/UTD-0002.txt"]);
    let mut c = learned("/opt/x", &["more/UTD-0002.txt"]);
    c.state = PS_NORMAL;
    c.test = c.train.clone();
    let only_b = learned("/usr/bin/y", &["UTD-0001.txt", "UTD-0003.txt"]);
    let e = |p: &Profile, h: &str| Entry::from_profile(p, source(h)).unwrap();
    [
        Body::new("a", [e(&a, "a")]),
        Body::new("b", [e(&b, "b"), e(&only_b, "b")]),
        Body::new("c", [e(&c, "c")]),
    ]
}

fn profiles(b: &Body) -> &[Entry] {
    &b.profiles
}

#[test]
fn a_bundle_round_trips_through_its_bytes() {
    let [a, b, _] = bundles();
    for body in [a, b] {
        let bytes = body.encode();
        assert!(bytes.starts_with(b"{\"format\":\"ebpfh-profiles\",\"version\":1,\"sha256\":\""));
        assert_eq!(Body::decode(&bytes).unwrap(), body);
    }
    let x = learned("/usr/bin/x", &["UTD-0001.txt"]);
    assert!(x.train.pairs() > 0);
    let e = Entry::from_profile(&x, source("a")).unwrap();
    let mut back = new_profile(x.key, &x.exe, &e, ImportAs::Bundle);
    // The lifecycle's counters are the host's own, not carried by bundles.
    assert_eq!(back.life.pending, x.life.pending);
    back.life = x.life;
    assert_eq!(back, x, "a profile survives export and import unchanged");
}

#[test]
fn a_profile_without_identity_cannot_be_exported() {
    let mut p = learned("/usr/bin/x", &["UTD-0001.txt"]);
    p.identity = None;
    assert!(Entry::from_profile(&p, source("a")).is_none());
}

fn damaged(bytes: &[u8]) -> String {
    Body::decode(bytes).unwrap_err().to_string()
}

#[test]
fn every_truncation_is_named() {
    let bytes = bundles()[1].encode();
    // The last byte is the newline, without which the JSON is whole.
    for len in 0..bytes.len() - 1 {
        assert_eq!(
            Body::decode(&bytes[..len]),
            Err(BundleError::Truncated),
            "prefix of {len}"
        );
    }
    assert_eq!(
        damaged(&bytes[..100]),
        "is truncated (its JSON ends early); copy it again"
    );
}

#[test]
fn an_edited_or_damaged_body_fails_the_checksum() {
    let bytes = String::from_utf8(bundles()[2].encode()).unwrap();
    let sentence =
        "is damaged or was edited: its contents do not match its sha256; export it again";
    // Tampering: claim normal for a profile that was not, or add a host.
    for (from, to) in [
        ("\"state\": \"normal\"", "\"state\": \"training\""),
        ("\"host\": \"c\"", "\"host\": \"d\""),
        ("\"count\": ", "\"count\": 1"),
    ] {
        assert!(bytes.contains(from), "{from}");
        let edited = bytes.replacen(from, to, 1);
        assert_eq!(damaged(edited.as_bytes()), sentence, "{from} -> {to}");
    }
    // Damage: one flipped bit in every byte of the body that stays valid JSON.
    let body_at = bytes.find("\"body\":").unwrap() + 7;
    let mut checksum_errors = 0;
    for i in body_at..bytes.len() - 2 {
        let mut b = bytes.clone().into_bytes();
        b[i] ^= 0x01;
        match Body::decode(&b) {
            Err(BundleError::Checksum) => checksum_errors += 1,
            Err(_) => {}
            Ok(_) => panic!("a flipped bit at {i} went unnoticed"),
        }
    }
    assert!(checksum_errors > 1000, "{checksum_errors}");
}

#[test]
fn foreign_formats_and_versions_are_refused() {
    let bytes = String::from_utf8(bundles()[0].encode()).unwrap();
    let newer = bytes.replacen("\"version\":1", "\"version\":2", 1);
    assert_eq!(
        damaged(newer.as_bytes()),
        "is bundle version 2, newer than this ebpfh reads (1); upgrade ebpfh"
    );
    // A newer layout may differ in anything: only format and version are read first.
    assert_eq!(
        damaged(br#"{"format":"ebpfh-profiles","version":7,"whatever":[]}"#),
        "is bundle version 7, newer than this ebpfh reads (1); upgrade ebpfh"
    );
    let zero = bytes.replacen("\"version\":1", "\"version\":0", 1);
    assert_eq!(
        damaged(zero.as_bytes()),
        "is bundle version 0, which no ebpfh writes"
    );
    let other = bytes.replacen("ebpfh-profiles", "kubescape", 1);
    assert_eq!(
        damaged(other.as_bytes()),
        "is not an ebpfh profile bundle (its format is 'kubescape', not 'ebpfh-profiles')"
    );
    // A profile file, an ELF, an empty file.
    let prof = crate::store::encode(&learned("/usr/bin/x", &["UTD-0001.txt"]));
    assert!(damaged(&prof).starts_with("is not an ebpfh profile bundle ("));
    assert!(damaged(b"\x7fELF\x02\x01").starts_with("is not an ebpfh profile bundle ("));
    assert_eq!(
        damaged(b""),
        "is truncated (its JSON ends early); copy it again"
    );
}

/// Reseals an edited body, as someone who edits a bundle and fixes its checksum would.
fn resealed(bytes: &str, from: &str, to: &str) -> Vec<u8> {
    let env: serde_json::Value = serde_json::from_str(bytes).unwrap();
    let body = serde_json::to_string_pretty(&env["body"])
        .unwrap()
        .replacen(from, to, 1);
    let raw = RawValue::from_string(body).unwrap();
    serde_json::to_vec(&EnvelopeOut {
        format: FORMAT,
        version: VERSION,
        sha256: Digest::of(raw.get().as_bytes()),
        body: &raw,
    })
    .unwrap()
}

#[test]
fn a_resealed_but_invalid_body_is_refused() {
    let [a, _, _] = bundles();
    let bytes = String::from_utf8(a.encode()).unwrap();
    // The edit tool's own output decodes: resealing is faithful.
    assert_eq!(Body::decode(&resealed(&bytes, "", "")).unwrap(), a);
    let sym = *a.profiles[0].train.rows.keys().next().unwrap();
    let cases = [
        (
            format!("\"{sym}\": \""),
            "\"512\": \"".to_string(),
            "'512' is not a call number below 512",
        ),
        (
            format!("\"{sym}\": \""),
            format!("\"{sym}\": \"AAAA"),
            "has 515 bytes, not 512",
        ),
        (
            "\"state\": \"".into(),
            "\"state\": \"x".into(),
            "unknown variant",
        ),
        (
            "\"counters\"".into(),
            "\"extra\": 1, \"counters\"".into(),
            "unknown field `extra`",
        ),
        (
            "\"sha256\": \"".into(),
            "\"sha256\": \"0".into(),
            "is not a SHA-256 digest",
        ),
    ];
    for (from, to, says) in cases {
        let err = damaged(&resealed(&bytes, &from, &to));
        assert!(
            err.starts_with("holds an invalid profile (") && err.contains(says),
            "{from} -> {to}: {err}"
        );
    }
    // Two entries for one identity.
    let mut twice = a.clone();
    twice.profiles.push(twice.profiles[0].clone());
    let body = serde_json::to_string_pretty(&twice).unwrap();
    let raw = RawValue::from_string(body).unwrap();
    let bytes = serde_json::to_vec(&EnvelopeOut {
        format: FORMAT,
        version: VERSION,
        sha256: Digest::of(raw.get().as_bytes()),
        body: &raw,
    })
    .unwrap();
    assert!(damaged(&bytes).contains("is listed twice or out of order"));
}

#[test]
fn merging_real_bundles_is_order_independent_and_idempotent() {
    let [a, b, c] = bundles();
    let abc = merge("m", &[a.clone(), b.clone(), c.clone()]);
    for order in [
        [&a, &c, &b],
        [&b, &a, &c],
        [&b, &c, &a],
        [&c, &a, &b],
        [&c, &b, &a],
    ] {
        let other = merge("m", &order.map(|x| x.clone()));
        assert_eq!(profiles(&other), profiles(&abc));
    }
    // Merged in steps, or with itself, or with a part again: the same profiles.
    let ab = merge("m", &[a.clone(), b.clone()]);
    assert_eq!(
        profiles(&merge("m", &[ab.clone(), c.clone()])),
        profiles(&abc)
    );
    assert_eq!(
        profiles(&merge("m", &[abc.clone(), abc.clone()])),
        profiles(&abc)
    );
    assert_eq!(
        profiles(&merge("m", &[abc.clone(), b.clone()])),
        profiles(&abc)
    );
    // And through the file format.
    let again = Body::decode(&abc.encode()).unwrap();
    assert_eq!(profiles(&merge("m", &[again, a.clone()])), profiles(&abc));

    // What the merge holds: two identities; x's pairs are the union of the three hosts'.
    assert_eq!(abc.profiles.len(), 2);
    let x = &abc
        .profiles
        .iter()
        .find(|e| e.paths.contains("/usr/bin/x"))
        .unwrap();
    let want = union(
        &union(&a.profiles[0].train, &b.get(&x.identity).unwrap().train),
        &c.profiles[0].train,
    );
    assert_eq!(x.train, want);
    assert_eq!(x.paths.len(), 2, "{:?}", x.paths);
    assert_eq!(x.state, State::Training);
    assert_eq!(x.sources.len(), 3);
}

#[test]
fn the_merge_unions_pairs_takes_the_larger_counters_and_the_stricter_state() {
    let a = learned("/usr/bin/x", &["UTD-0001.txt"]);
    let mut b = learned("/usr/bin/x", &["UTD-0003.txt", "more/UTD-0002.txt"]);
    b.state = PS_NORMAL;
    b.test = b.train.clone();
    b.anomalies = 3;
    let (ea, eb) = (
        Entry::from_profile(&a, source("a")).unwrap(),
        Entry::from_profile(&b, source("b")).unwrap(),
    );
    let j = ea.join(&eb);
    assert_eq!(j.train, union(&a.train, &b.train));
    assert_ne!(a.train, b.train, "the hosts learned different pairs");
    assert!(j.train.pairs() >= a.train.pairs().max(b.train.pairs()));
    assert_eq!(j.test, b.test);
    assert_eq!(j.state, State::Training, "training is stricter than normal");
    assert_eq!(j.counters.count, a.count.max(b.count));
    assert_eq!(j.counters.anomalies, 3);
    assert_eq!(j.sources.len(), 2);

    // Import: stricter keeps the host's training; --as normal detects with everything at once.
    let kept = import_into(&a, &eb, ImportAs::Stricter);
    assert_eq!(kept.state(), State::Training);
    assert_eq!(kept.key, a.key);
    let normal = import_into(&a, &eb, ImportAs::Normal);
    assert_eq!(normal.state(), State::Normal);
    assert_eq!(normal.test, union(&union(&a.train, &b.train), &b.test));
    assert_eq!(
        (normal.anomalies, normal.train_count, normal.last_mod_count),
        (0, 0, 0)
    );
    let taken = import_into(&a, &eb, ImportAs::Bundle);
    assert_eq!(taken.state(), State::Normal);
    assert_eq!(
        taken.test, b.test,
        "the host's training pairs are not trusted"
    );
    // An executable the host never ran gets the bundle's own profile.
    let fresh = new_profile(KEY, "/here/x", &eb, ImportAs::Stricter);
    assert_eq!(
        (fresh.state(), &fresh.exe),
        (State::Normal, &"/here/x".to_string())
    );
    assert_eq!(fresh.test, b.test);
}

// ---------------------------------------------------------------------------------------------
// The laws, on random entries

fn table() -> impl Strategy<Value = Table> {
    prop::collection::btree_map(
        0u16..NSYMBOLS as u16,
        prop::collection::vec((0usize..NSYMBOLS, any::<u8>()), 0..6),
        0..5,
    )
    .prop_map(|rows| {
        let mut t = Table::default();
        for (sym, bytes) in rows {
            let mut r = Box::new([0u8; NSYMBOLS]);
            for (i, b) in bytes {
                r[i] = b;
            }
            t.rows.insert(sym, r);
        }
        t.compact();
        t
    })
}

fn entry() -> impl Strategy<Value = Entry> {
    (
        table(),
        table(),
        prop::sample::select(vec![State::Training, State::Frozen, State::Normal]),
        prop::array::uniform6(0u64..1000),
        prop::sample::subsequence(vec!["/a", "/b", "/c"], 0..3),
        prop::sample::subsequence(vec!["h1", "h2", "h3"], 1..3),
    )
        .prop_map(|(train, test, state, c, paths, hosts)| Entry {
            identity: Identity::exe(Digest::of(b"x")),
            paths: paths.into_iter().map(String::from).collect(),
            state,
            counters: Counters {
                count: c[0],
                train_count: c[1],
                last_mod_count: c[2],
                sequences: c[3],
                anomalies: c[4],
                normal_time: c[5],
            },
            train,
            test,
            sources: hosts.into_iter().map(source).collect(),
        })
}

proptest! {
    #[test]
    fn join_is_commutative_associative_and_idempotent(a in entry(), b in entry(), c in entry()) {
        prop_assert_eq!(a.join(&b), b.join(&a));
        prop_assert_eq!(a.join(&b).join(&c), a.join(&b.join(&c)));
        prop_assert_eq!(a.join(&a), a.clone());
        prop_assert_eq!(a.join(&b).join(&b), a.join(&b));
    }

    #[test]
    fn importing_twice_is_importing_once(a in entry(), b in entry()) {
        let local = new_profile(KEY, "/here", &a, ImportAs::Bundle);
        for how in [ImportAs::Stricter, ImportAs::Bundle, ImportAs::Normal] {
            let once = import_into(&local, &b, how);
            prop_assert_eq!(import_into(&once, &b, how), once.clone());
            // What the host had is never lost.
            prop_assert_eq!(union(&once.train, &local.train), once.train.clone());
            prop_assert_eq!(union(&once.test, &local.test), once.test.clone());
        }
    }

    #[test]
    fn bundles_of_random_entries_round_trip(a in entry(), b in entry()) {
        let body = Body::new("h", [a, b]);
        prop_assert_eq!(Body::decode(&body.encode()).unwrap(), body);
    }
}
