//! Storage faults as an operator meets them: who may read a node's files, and what a damaged
//! store does. Real `mgha` processes on real files; each test has its own temp dir.

mod support;

use mgha_tests::seeded::XorShift;
use std::path::Path;
use std::process::{Command, Stdio};

use support::*;

/// Runs `mgha ARGS` under `umask 000` (through the shell, as an operator's session would), and
/// requires it to succeed.
fn ok_under_umask_000(args: &[&str]) {
    let out = Command::new("sh")
        .arg("-c")
        .arg("umask 000 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_mgha"))
        .args(args)
        .env("MGHA_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("sh runs");
    assert!(out.status.success(), "mgha {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// The permission bits as `stat` prints them.
fn stat_mode(path: &Path) -> String {
    let out = Command::new("stat").args(["-c", "%a", s(path)]).output().expect("stat runs");
    assert!(out.status.success(), "stat {}", path.display());
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn data_directory_files_and_backups_are_private_under_umask_000() {
    let scratch = Scratch::new();
    let dir = scratch.path("a");
    let addrs = free_addrs(2);
    ok_under_umask_000(&[
        "init",
        "-d",
        s(&dir),
        "--name",
        "a",
        "--admin",
        &addrs[0].to_string(),
        "--listen",
        &addrs[1].to_string(),
    ]);
    let hosts = scratch.file("hosts.json", &hosts("h", 3));
    ok(&["apply", "--offline", "-d", s(&dir), s(&hosts)]);
    let backup = scratch.path("a.mghabak");
    ok_under_umask_000(&["backup", "--offline", "-d", s(&dir), "--out", s(&backup)]);
    let restored = scratch.path("restored");
    ok_under_umask_000(&["restore", "--in", s(&backup), "-d", s(&restored)]);

    for private_dir in [dir.clone(), dir.join("tls"), restored.clone()] {
        assert_eq!(stat_mode(&private_dir), "700", "{}", private_dir.display());
    }
    for file in ["mgha.redb", "mgha.toml", "admin.token", "tls/ca.key", "tls/node.key"] {
        assert_eq!(stat_mode(&dir.join(file)), "600", "{file}");
    }
    assert_eq!(stat_mode(&backup), "600", "backup");
    for file in ["mgha.redb", "mgha.toml", "admin.token"] {
        assert_eq!(stat_mode(&restored.join(file)), "600", "restored {file}");
    }
    // Nothing but the backup itself is left beside it.
    let beside: Vec<String> = std::fs::read_dir(scratch.path(""))
        .expect("ls")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.contains("partial"))
        .collect();
    assert!(beside.is_empty(), "temporary files left: {beside:?}");
}

/// Flips `from` to `to` at every place `needle` occurs in `file`; returns how many it changed.
fn flip_everywhere(file: &Path, needle: &[u8], from: u8, to: u8) -> usize {
    let mut bytes = std::fs::read(file).expect("read store");
    let at = needle.iter().position(|b| *b == from).expect("the byte to flip is in the needle");
    let mut n = 0;
    let mut i = 0;
    while let Some(pos) = bytes[i..].windows(needle.len()).position(|w| w == needle) {
        bytes[i + pos + at] = to;
        n += 1;
        i += pos + needle.len();
    }
    std::fs::write(file, bytes).expect("write store");
    n
}

#[test]
fn a_damaged_object_is_exit_9_and_http_500_corrupt_never_other_data() {
    let scratch = Scratch::new();
    let mut node = scratch.init("a");
    let first = scratch.file(
        "web.json",
        r#"{"message": "web", "changes": [{"op": "put", "type": "host", "name": "web1", "fields": {"ipv4-address": "200.1.1.6"}}]}"#,
    );
    ok(&["apply", "--offline", "-d", node.d(), s(&first)]);
    // A later revision, so that the damaged object is not in the head's own revision record.
    ok(&["apply", "--offline", "-d", node.d(), s(&scratch.file("more.json", &hosts("h", 2)))]);
    let damaged = flip_everywhere(&node.dir.join("mgha.redb"), b"200.1.1.6", b'6', b'7');
    assert!(damaged > 0, "the address is in the store file");

    // Without a daemon: the store opened by the command itself.
    let err = fails(&["get", "--offline", "-d", node.d(), "host", "web1"], 9);
    assert!(err.contains("object ") && !err.contains("200.1.1.7"), "{err}");
    fails(&["list", "--offline", "-d", node.d()], 9);
    fails(&["check", "--offline", "-d", node.d()], 9);
    assert!(ok(&["get", "--offline", "-d", node.d(), "host", "h-1"]).contains("10.0.0.1"), "intact objects are served");

    // Through the daemon: HTTP 500 with code `corrupt`, and the CLI exits 9 the same; its
    // background scrub finds the damage without being asked.
    node.put_config("scrub_interval_ms", "1000");
    node.start();
    wait_until("the scrub reports the damaged object", || {
        node.log().contains("the scrub found a damaged record") && node.log().contains("object ")
    });
    let token = std::fs::read_to_string(node.dir.join("admin.token")).expect("token");
    let agent = ureq::Agent::config_builder().proxy(None).http_status_as_error(false).build().new_agent();
    let mut resp = agent
        .get(format!("http://{}/v1/objects/host/web1", node.admin()))
        .header("authorization", format!("Bearer {}", token.trim()))
        .call()
        .expect("the daemon answers");
    assert_eq!(resp.status(), 500);
    let body: serde_json::Value = resp.body_mut().read_json().expect("json error");
    assert_eq!(body["error"]["code"], "corrupt", "{body}");
    fails(&["get", "-d", node.d(), "host", "web1"], 9);
    fails(&["check", "-d", node.d()], 9);
    fails(&["list", "-d", node.d()], 9);
    assert_eq!(node.terminate(), Some(0));
}

/// Runs a read command on a (possibly damaged) stopped node: it must end with exit 0 and print
/// exactly what it printed on the intact store, or with exit 9 (`corrupt`); never a panic, and
/// never other data.
fn read_is_intact_or_corrupt(args: &[&str], intact: &str, what: &str) {
    let out = mgha(args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) => assert_eq!(stdout, intact, "{what}: exit 0 with other data than was published"),
        Some(9) => assert!(stderr.contains("error:"), "{what}: exit 9 without a message: {stderr}"),
        other => panic!("{what}: exit {other:?}, neither the data nor `corrupt`: {stderr}"),
    }
}

#[test]
fn bytes_flipped_in_the_header_and_the_records_never_serve_other_data_or_panic() {
    let scratch = Scratch::new();
    let node = scratch.init("a");
    for batch in ["a", "b", "c"] {
        ok(&["apply", "--offline", "-d", node.d(), s(&scratch.file("batch.json", &hosts(batch, 40)))]);
    }
    let list = ["list", "--offline", "-d", node.d(), "--json", "--limit", "1000"];
    let revisions = ["revisions", "--offline", "-d", node.d(), "--json"];
    let (intact_list, intact_revisions) = (ok(&list), ok(&revisions));
    let store = node.dir.join("mgha.redb");
    let pristine = std::fs::read(&store).expect("read store");

    // Seeded positions in the file's header page, and in the stored records: around every place
    // an object's address is stored (payloads of the objects, revisions and undo tables, and
    // the seals after them). Damage to the B-tree's own page structure is not among them: redb
    // can still panic on a branch page whose offsets point outside it (docs/storage.md).
    let mut rng = XorShift(0x6d67_6861_0000_0013);
    let mut positions: Vec<usize> = (0..40).map(|_| rng.below(4096.min(pristine.len()))).collect();
    let needle = b"10.0.0.";
    positions.extend(
        pristine
            .windows(needle.len())
            .enumerate()
            .filter(|(_, w)| w == needle)
            .map(|(i, _)| (i + rng.below(48)).min(pristine.len() - 1))
            .take(200),
    );
    // History records are stored deflated (docs/storage.md): the addresses in them are not
    // plain text, so positions are also taken inside every record that starts with the deflated
    // tag and codec (0xc1 0x01).
    let deflated: Vec<usize> =
        pristine.windows(2).enumerate().filter(|(_, w)| *w == [0xc1, 0x01]).map(|(i, _)| i).collect();
    assert!(!deflated.is_empty(), "the store holds deflated history records");
    positions.extend((0..80).map(|k| (deflated[k % deflated.len()] + rng.below(1024)).min(pristine.len() - 1)));
    assert!(positions.len() >= 200, "{} positions", positions.len());

    for (n, &at) in positions.iter().enumerate() {
        let mut damaged = pristine.clone();
        damaged[at] ^= 0x5a;
        std::fs::write(&store, &damaged).expect("write store");
        let what = format!("flip {n} at byte {at} of {}", pristine.len());
        read_is_intact_or_corrupt(&list, &intact_list, &what);
        read_is_intact_or_corrupt(&revisions, &intact_revisions, &what);
    }
}
