//! A damaged Standby heals, with real `mgha` daemons: bytes flipped in a stopped Standby's store
//! at seeded places, the damage found (`mgha check`), the damaged store set aside in
//! `DIR/archive/` and named in the status, a full sync from the Active, and the Standby back at
//! the Active's head and state hash, the Active staying Active throughout. Also: a Standby whose
//! store fails its quick check at start serves nothing and heals, while an Active exits 9 saying
//! what to run; a damaged Active's status names the changeover to run, and it heals after it.

mod support;

use support::*;

const EXIT_CORRUPT: i32 = 9;

/// Byte offsets in `file` where `needle` starts.
fn offsets(file: &std::path::Path, needle: &[u8]) -> Vec<usize> {
    let bytes = std::fs::read(file).expect("read the store");
    bytes.windows(needle.len()).enumerate().filter(|(_, w)| *w == needle).map(|(i, _)| i).collect()
}

#[test]
fn damaged_standby_sets_its_store_aside_and_heals_to_the_actives_state() {
    let scratch = Scratch::new();
    let (p, mut b) = started_pair(&scratch);
    // The first publish's addresses: in objects, the revision record and its undo, never in the
    // head revision (its damage would refuse the open itself).
    ok(&["apply", "-d", p.d(), s(&scratch.file("first.json", &hosts("first", 30)))]);
    ok(&["apply", "-d", p.d(), s(&scratch.file("second.json", &hosts("second", 1)))]);
    wait_converged(&p, &[&b]);
    let store = b.dir.join("mgha.redb");
    let mut seed = 0x5eed_u64;
    let mut healed = 0;
    let mut previous: Option<String> = None;
    for round in 0..3 {
        b.terminate();
        // A flip that lands on a live record (not on a page the store no longer uses).
        let mut found = false;
        for _ in 0..20 {
            let places = offsets(&store, b"10.0.0.");
            assert!(!places.is_empty(), "the addresses are in the store");
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let at = places[(seed >> 33) as usize % places.len()] + 7;
            let mut bytes = std::fs::read(&store).expect("read");
            bytes[at] ^= 0x01;
            std::fs::write(&store, &bytes).expect("write");
            if mgha(&["check", "--offline", "-d", b.d()]).status.code() == Some(EXIT_CORRUPT) {
                found = true;
                break;
            }
        }
        assert!(found, "round {round}: a flip landed on a live record");
        b.start();
        // The running Standby finds the damage (when `check` reads it, as the scrub would, or
        // earlier, from the mark the offline check left), sets its store aside and heals. A
        // heal can be over before `check` runs: then a new archive says the damage was found.
        let code = mgha(&["check", "-d", b.d()]).status.code();
        let newly_archived =
            || b.http_status().is_some_and(|st| st.get("archived").and_then(|a| a.as_str()) != previous.as_deref());
        assert!(code == Some(EXIT_CORRUPT) || (code == Some(0) && newly_archived()), "check exit {code:?}");
        assert_eq!(p.status()["node"]["role"], "active", "a damaged standby never takes the role");
        wait_until("the standby to heal", || {
            b.http_status().is_some_and(|st| st.get("damage").is_none())
                && newly_archived()
                && b.http_status()
                    .is_some_and(|st| Some(st["head"].clone()) == p.http_status().map(|s| s["head"].clone()))
        });
        ok(&["check", "-d", b.d()]);
        let st = b.status();
        let archived = st["archived"].as_str().expect("archived").to_string();
        assert!(archived.contains("/archive/") && std::path::Path::new(&archived).exists(), "{st}");
        previous = Some(archived);
        assert!(b.log().contains("set aside"), "the log names the archive");
        healed += 1;
        ok(&["apply", "-d", p.d(), s(&scratch.file(&format!("r{round}.json"), &hosts(&format!("r{round}"), 1)))]);
        wait_converged(&p, &[&b]);
    }
    assert_eq!(healed, 3);
    let archives = std::fs::read_dir(b.dir.join("archive")).expect("archive dir").count();
    assert_eq!(archives, 3, "every damaged store is kept");
    assert!(ok(&["get", "-d", b.d(), "host", "first-7"]).contains("10.0.0.7"), "healed data is the published data");
}

/// Flips one bit in every copy of `needle` in the stopped node's store file (live pages and
/// pages the store no longer uses alike).
fn flip_everywhere(store: &std::path::Path, needle: &[u8]) {
    let places = offsets(store, needle);
    assert!(!places.is_empty(), "{:?} is in the store", String::from_utf8_lossy(needle));
    let mut bytes = std::fs::read(store).expect("read");
    for at in places {
        bytes[at + needle.len() - 1] ^= 0x01;
    }
    std::fs::write(store, &bytes).expect("write");
}

/// Flips one bit inside every deflated history record of the stopped node's store file (a
/// record that starts with the tag 0xc1, the codec 0x01 and a plausible length, docs/storage.md):
/// the addresses in those records are not plain text, so `flip_everywhere` misses them, and the
/// head's records are among them.
fn flip_history_records(store: &std::path::Path) {
    let mut bytes = std::fs::read(store).expect("read");
    let records: Vec<usize> = (0..bytes.len().saturating_sub(8))
        .filter(|&i| bytes[i] == 0xc1 && bytes[i + 1] == 0x01)
        .filter(|&i| {
            (128..=1 << 20).contains(&u32::from_le_bytes([bytes[i + 2], bytes[i + 3], bytes[i + 4], bytes[i + 5]]))
        })
        .collect();
    assert!(!records.is_empty(), "the store holds deflated history records");
    for at in records {
        bytes[at + 7] ^= 0x01;
    }
    std::fs::write(store, &bytes).expect("write");
}

/// An Active `p` and its Standby `b`, started with fast timers.
fn started_pair(scratch: &Scratch) -> (Node, Node) {
    let mut p = scratch.init("p");
    p.fast_timers();
    p.start();
    let mut b = scratch.join(&p, "b");
    b.fast_timers();
    b.start();
    (p, b)
}

/// An Active `p` and its Standby `b` with fast timers, synchronized after `first` (a changeset)
/// and then a head revision that puts host `mark` at 10.77.66.55: that address appears in the
/// head's record and in the object, where the tests damage the store.
fn pair_with_mark(scratch: &Scratch, first: &str) -> (Node, Node) {
    let (p, b) = started_pair(scratch);
    ok(&["apply", "-d", p.d(), s(&scratch.file("first.json", first))]);
    let head = r#"{"message": "head", "changes": [{"op": "put", "type": "host", "name": "mark",
        "fields": {"ipv4-address": "10.77.66.55"}}]}"#;
    ok(&["apply", "-d", p.d(), s(&scratch.file("head.json", head))]);
    wait_converged(&p, &[&b]);
    (p, b)
}

/// The head revision's record damaged: the quick check every start runs fails. A Standby starts
/// all the same, serving none of its data (`corrupt`), says so, is never a changeover target,
/// and heals by a full sync; an Active refuses to start (exit 9) and says what to run.
#[test]
fn a_standby_that_fails_its_quick_check_at_start_heals_and_an_active_exits_9() {
    let scratch = Scratch::new();
    let (mut p, mut b) = pair_with_mark(&scratch, &hosts("first", 30));
    b.terminate();
    flip_everywhere(&b.dir.join("mgha.redb"), b"10.77.66.55");
    flip_history_records(&b.dir.join("mgha.redb"));

    b.start();
    let st = b.status();
    let damage = st["damage"].as_str().unwrap_or_default().to_string();
    assert!(!damage.is_empty() || st["archived"].is_string(), "the damage is shown, or already healed: {st}");
    assert!(b.log().contains("failed its check at start"), "the log says so:\n{}", b.log());
    assert_eq!(p.status()["node"]["role"], "active", "a damaged standby never takes the role");
    wait_until("the standby to heal", || {
        b.http_status().is_some_and(|st| {
            st.get("damage").is_none()
                && st["archived"].is_string()
                && Some(st["head"].clone()) == p.http_status().map(|s| s["head"].clone())
        })
    });
    ok(&["check", "-d", b.d()]);
    assert!(ok(&["get", "-d", b.d(), "host", "mark"]).contains("10.77.66.55"), "healed data is the published data");
    let archived = b.status()["archived"].as_str().expect("archived").to_string();
    assert!(std::path::Path::new(&archived).exists(), "the damaged store is kept at {archived}");

    // The Active, damaged the same way, does not start, and says what to run.
    p.terminate();
    flip_everywhere(&p.dir.join("mgha.redb"), b"10.77.66.55");
    flip_history_records(&p.dir.join("mgha.redb"));
    let out = mgha(&["run", "-d", p.d()]);
    assert_eq!(out.status.code(), Some(EXIT_CORRUPT), "{out:?}");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("mgha restore") && said.contains("mgha join"), "{said}");
    b.terminate();
}

/// While a quarantined Standby waits for its Active, it serves nothing: reads answer `corrupt`
/// (exit 9) and it says so in status and metrics.
#[test]
fn a_standby_damaged_at_start_serves_no_data_until_it_heals() {
    let scratch = Scratch::new();
    let (mut p, mut b) = pair_with_mark(&scratch, &hosts("first", 1));
    b.terminate();
    // With its Active down, the Standby cannot heal: what it shows stays.
    p.terminate();
    flip_everywhere(&b.dir.join("mgha.redb"), b"10.77.66.55");
    b.start();
    let st = b.status();
    assert!(st["damage"].is_string(), "{st}");
    assert_eq!(st["recovery"]["action"], "heal", "a standby heals by itself: {st}");
    assert!(b.metrics().contains("mgha_store_damaged 1"), "{}", b.metrics());
    fails(&["get", "-d", b.d(), "host", "mark"], EXIT_CORRUPT);
    fails(&["list", "-d", b.d(), "--type", "host"], EXIT_CORRUPT);
    fails(&["revisions", "-d", b.d()], EXIT_CORRUPT);
    assert!(ok(&["status", "-d", b.d()]).contains("DAMAGED"));
    b.terminate();
}

/// Without automatic failover, a damaged Active keeps the role, and `mgha status` names the
/// command to run: the changeover to its synchronized Standby; run, the old Active heals.
#[test]
fn a_damaged_active_names_the_changeover_to_run_and_heals_after_it() {
    let scratch = Scratch::new();
    let (mut p, b) = started_pair(&scratch);
    let damaged = r#"{"message": "to damage", "changes": [{"op": "put", "type": "host", "name": "mark",
        "fields": {"ipv4-address": "10.77.66.55"}}]}"#;
    ok(&["apply", "-d", p.d(), s(&scratch.file("mark.json", damaged))]);
    ok(&["apply", "-d", p.d(), s(&scratch.file("later.json", &hosts("later", 2)))]);
    wait_converged(&p, &[&b]);
    p.terminate();
    flip_everywhere(&p.dir.join("mgha.redb"), b"10.77.66.55");
    p.start();
    // The scrub's first pass, at start, finds the damage.
    wait_until("the active to find its damage", || p.http_status().is_some_and(|st| st["damage"].is_string()));
    wait_peers_synchronized(&p, &["b"]);
    let said = ok(&["status", "-d", p.d()]);
    assert!(said.contains("DAMAGED") && said.contains("`mgha changeover --to b`"), "{said}");
    let st = p.status();
    assert_eq!(st["node"]["role"], "active", "without automatic failover it keeps the role");
    // Every front end reads the same next step from the status document.
    assert_eq!(st["recovery"]["action"], "changeover", "{st}");
    assert_eq!(st["recovery"]["to"], "b", "{st}");

    ok(&["changeover", "-d", p.d(), "--to", "b"]);
    wait_until("p to heal as a standby", || {
        p.http_status().is_some_and(|st| {
            st["node"]["role"] == "standby"
                && st.get("damage").is_none()
                && st["archived"].is_string()
                && Some(st["head"].clone()) == b.http_status().map(|s| s["head"].clone())
        })
    });
    assert!(ok(&["get", "-d", p.d(), "host", "mark"]).contains("10.77.66.55"));
    ok(&["check", "-d", p.d()]);
}
