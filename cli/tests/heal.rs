//! A damaged Standby heals, with real `mgha` daemons: bytes flipped in a stopped Standby's store
//! at seeded places, the damage found (`mgha check`), the damaged store set aside in
//! `DIR/archive/` and named in the status, a full sync from the Active, and the Standby back at
//! the Active's head and state hash, the Active staying Active throughout.

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
    let mut p = scratch.init("p");
    p.fast_timers();
    p.start();
    let mut b = scratch.join(&p, "b");
    b.fast_timers();
    b.start();
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
