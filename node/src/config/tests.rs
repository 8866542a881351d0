//! The configuration parser: every key, its defaults, refusals that name the key and its line,
//! and the file rules (regular files only, bounded, `data_dir` relative to the file).

use super::*;
use mgha_core::ErrorCode;

const GOOD: &str = "name = \"n1\"\nadmin = \"127.0.0.1:7420\"\nlisten = \"127.0.0.1:7430\"\n\
    advertise = \"mgmt1.example:7430\"\nretain_revisions = 100\nsync_standbys = 1\nsync_timeout_ms = 2000\n\
    heartbeat_ms = 200\npeer_timeout_ms = 1000\nchangeover_timeout_ms = 3000\nlog = \"debug\"\n\
    health_listen = \"0.0.0.0:8008\"\nlog_format = \"json\"\n";

#[test]
fn parses_every_key() {
    let c = NodeConfig::parse(GOOD).expect("parses");
    assert_eq!(c.name.as_deref(), Some("n1"));
    assert_eq!(c.admin, Some("127.0.0.1:7420".parse().expect("addr")));
    assert_eq!(c.listen.as_deref(), Some("127.0.0.1:7430"));
    assert_eq!(c.advertise.as_deref(), Some("mgmt1.example:7430"));
    assert_eq!(c.retain_revisions, Some(100));
    assert_eq!((c.sync_standbys, c.sync_timeout_ms, c.heartbeat_ms, c.peer_timeout_ms), (1, 2000, 200, 1000));
    assert_eq!(c.changeover_timeout_ms, 3000);
    assert_eq!(c.log, LogLevel::Debug);
    assert_eq!(c.health_listen, Some("0.0.0.0:8008".parse().expect("addr")));
    assert_eq!(c.log_format, LogFormat::Json);
}

#[test]
fn optional_keys_have_one_set_of_defaults() {
    let c = NodeConfig::parse("data_dir = \"/srv/a\"\n").expect("parses");
    assert_eq!(c, NodeConfig { data_dir: Some("/srv/a".into()), ..NodeConfig::default() });
    assert_eq!(c.retain_revisions, None);
    assert_eq!(c.log, LogLevel::Info);
    assert_eq!((c.sync_standbys, c.failover), (0, FailoverMode::Manual));
    assert_eq!(
        (c.sync_timeout_ms, c.heartbeat_ms, c.peer_timeout_ms, c.changeover_timeout_ms),
        (SYNC_TIMEOUT_MS_DEFAULT, HEARTBEAT_MS_DEFAULT, PEER_TIMEOUT_MS_DEFAULT, CHANGEOVER_TIMEOUT_MS_DEFAULT)
    );
}

#[test]
fn keys_map_to_engine_and_sync_options() {
    let c = NodeConfig::parse(GOOD).expect("parses");
    let e = c.engine_options();
    assert_eq!((e.retain_revisions, e.sync_standbys, e.sync_timeout_ms), (Some(100), 1, 2000));
    let s = c.sync_config().expect("listen is set");
    assert_eq!(s.listen, "127.0.0.1:7430");
    assert_eq!(s.advertise.as_deref(), Some("mgmt1.example:7430"));
    assert_eq!((s.heartbeat_ms, s.peer_timeout_ms, s.changeover_timeout_ms), (200, 1000, 3000));
    assert_eq!(c.member_address("127.0.0.1:7430"), "mgmt1.example:7430");
    assert!(NodeConfig::new("n", "127.0.0.1:1".parse().expect("addr")).sync_config().is_none());
}

#[test]
fn unknown_key_is_refused_naming_it_and_its_line() {
    let e = NodeConfig::parse(&format!("{GOOD}colour = \"blue\"\n")).expect_err("unknown key");
    assert_eq!(e.key(), Some("colour"));
    assert!(e.to_string().starts_with("config: key 'colour' (line 14): "), "{e}");
    assert_eq!(e.code(), ErrorCode::InvalidArgument);
}

#[test]
fn invalid_values_are_refused_naming_the_key_and_line() {
    for (text, key) in [
        ("name = \"n1\"\nadmin = 7420\n", "admin"),
        ("name = \"n1\"\nadmin = \"localhost\"\n", "admin"),
        ("name = \"n1\"\nadmin = \"10.1.2.3:7420\"\n", "admin"),
        ("name = \"n1\"\nadmin = \"127.0.0.1:0\"\n", "admin"),
        ("name = \"n1\"\nadmin_tls_cert = \"a.pem\"\n", "admin_tls_cert"),
        ("name = \"n1\"\nadmin_tls_key = \"a.key\"\n", "admin_tls_key"),
        ("name = \"n1\"\nadmin_tls_cert = \"\"\nadmin_tls_key = \"a.key\"\n", "admin_tls_cert"),
        ("name = \"n1\"\nhealth_listen = \"0.0.0.0:0\"\n", "health_listen"),
        ("name = \"n1\"\nhealth_listen = \"probe:80\"\n", "health_listen"),
        ("name = \"n1\"\nadmin = \"127.0.0.1:7420\"\nhealth_listen = \"127.0.0.1:7420\"\n", "health_listen"),
        ("name = \"n1\"\nlog = \"verbose\"\n", "log"),
        ("name = \"n1\"\nlog_format = \"xml\"\n", "log_format"),
        ("name = \"n1\"\nretain_revisions = -1\n", "retain_revisions"),
        ("name = \"n1\"\nretain_revisions = 0\n", "retain_revisions"),
        ("name = \"\"\n", "name"),
        ("name = \"a\\u0007b\"\n", "name"),
        ("name = \"n1\"\nlisten = \"127.0.0.1\"\n", "listen"),
        ("name = \"n1\"\nlisten = \":7430\"\n", "listen"),
        ("name = \"n1\"\nlisten = 7430\n", "listen"),
        ("name = \"n1\"\nadvertise = \"h:1\"\n", "advertise"),
        ("name = \"n1\"\nlisten = \"127.0.0.1:0\"\nadvertise = \"h:0\"\n", "advertise"),
        ("name = \"n1\"\nsync_standbys = 1\n", "sync_standbys"),
        ("name = \"n1\"\nsync_standbys = -1\n", "sync_standbys"),
        ("name = \"n1\"\nsync_timeout_ms = 0\n", "sync_timeout_ms"),
        ("name = \"n1\"\nheartbeat_ms = 1\n", "heartbeat_ms"),
        ("name = \"n1\"\npeer_timeout_ms = 1500\n", "peer_timeout_ms"),
        ("name = \"n1\"\nheartbeat_ms = 100\npeer_timeout_ms = 150\n", "peer_timeout_ms"),
        ("name = \"n1\"\nheartbeat_ms = \"1s\"\n", "heartbeat_ms"),
        ("name = \"n1\"\nchangeover_timeout_ms = 0\n", "changeover_timeout_ms"),
        ("name = \"n1\"\ndata_dir = \"\"\n", "data_dir"),
        ("name = \"n1\"\nquorum_listen = \"127.0.0.1:9\"\n", "quorum_listen"),
        ("name = \"n1\"\netcd_prefix = \"/x\"\n", "etcd_prefix"),
        ("name = \"n1\"\nfailover = \"quorum\"\n", "failover"),
        ("name = \"n1\"\nlisten = \"127.0.0.1:1\"\nfailover = \"quorum\"\n", "quorum_listen"),
        ("name = \"n1\"\nlisten = \"127.0.0.1:1\"\nfailover = \"etcd\"\n", "etcd_endpoints"),
        (
            "name = \"n1\"\nlisten = \"127.0.0.1:1\"\nfailover = \"quorum\"\nquorum_listen = \"127.0.0.1:2\"\n\
             quorum_members = [\"n1=127.0.0.1:2\", \"w=127.0.0.1:3\"]\n",
            "quorum_members",
        ),
        (
            "name = \"n1\"\nlisten = \"127.0.0.1:1\"\nfailover = \"quorum\"\nquorum_listen = \"127.0.0.1:2\"\n\
             quorum_members = [\"a=127.0.0.1:2\", \"b=127.0.0.1:3\", \"c=127.0.0.1:4\"]\n",
            "quorum_members",
        ),
    ] {
        let e = NodeConfig::parse(text).expect_err(text);
        assert_eq!(e.key(), Some(key), "{text:?} gave {e}");
        let line = text.lines().position(|l| l.starts_with(key)).map(|i| i + 1);
        if let Some(line) = line {
            assert!(e.to_string().contains(&format!("key '{key}' (line {line})")), "{text:?} gave {e}");
        }
    }
}

#[test]
fn missing_key_is_named() {
    let e = NodeConfig::parse("name = \"n1\"\n").expect("no key is required to parse");
    assert!(e.data_dir().is_err());
    let err = e.require_admin().expect_err("no admin");
    assert_eq!(err.key(), Some("admin"));
    let err = NodeConfig::parse("data_dir = \"/a\"\n").expect("parses").require_name().expect_err("no name");
    assert_eq!(err.key(), Some("name"));
}

#[test]
fn listen_may_pick_a_port_but_a_quorum_address_may_not() {
    assert!(NodeConfig::parse("listen = \"127.0.0.1:0\"\n").is_ok());
    let e = NodeConfig::parse(
        "name = \"a\"\nlisten = \"127.0.0.1:0\"\nfailover = \"quorum\"\nquorum_listen = \"127.0.0.1:0\"\n\
         quorum_members = [\"a=127.0.0.1:2\", \"b=127.0.0.1:3\", \"c=127.0.0.1:4\"]\n",
    )
    .expect_err("port 0");
    assert_eq!(e.key(), Some("quorum_listen"));
}

#[test]
fn a_text_over_the_limit_is_too_large() {
    let text = format!("# {}\n", "x".repeat(CONFIG_BYTES_MAX));
    assert_eq!(NodeConfig::parse(&text).expect_err("too large").code(), ErrorCode::TooLarge);
}

#[test]
fn written_config_reads_back_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = NodeConfig::new("n1", "127.0.0.1:7421".parse().expect("addr"));
    c.retain_revisions = Some(5);
    c.listen = Some("127.0.0.1:7431".into());
    c.write_new(dir.path()).expect("writes");
    let loaded = NodeConfig::load(dir.path()).expect("loads");
    assert_eq!(loaded, NodeConfig { data_dir: Some(dir.path().to_path_buf()), ..c.clone() });
    let mode = std::fs::metadata(NodeConfig::path(dir.path())).expect("stat").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(c.write_new(dir.path()).is_err(), "an existing config is never replaced");
}

#[test]
fn data_dir_follows_the_config_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("engine.toml");
    std::fs::write(&file, "data_dir = \"node\"\n").expect("write");
    assert_eq!(NodeConfig::load_file(&file).expect("loads").data_dir, Some(dir.path().join("node")));
    std::fs::write(&file, "data_dir = \"/abs\"\n").expect("write");
    assert_eq!(NodeConfig::load_file(&file).expect("loads").data_dir, Some(PathBuf::from("/abs")));
    std::fs::write(&file, "name = \"n\"\n").expect("write");
    assert_eq!(NodeConfig::load_file(&file).expect("loads").data_dir, Some(dir.path().to_path_buf()));
}

#[test]
fn a_data_dir_config_names_its_own_directory_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(NodeConfig::path(dir.path()), "name = \"n\"\ndata_dir = \"/elsewhere\"\n").expect("write");
    let e = NodeConfig::load(dir.path()).expect_err("another directory");
    assert_eq!(e.key(), Some("data_dir"));
    assert!(e.to_string().contains("(line 2)"), "{e}");
    std::fs::write(NodeConfig::path(dir.path()), format!("data_dir = {:?}\n", dir.path())).expect("write");
    assert!(NodeConfig::load(dir.path()).is_ok());
}

#[test]
fn only_regular_files_are_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join("fifo.toml");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo runs");
    assert!(made.success(), "mkfifo");
    for (path, kind) in
        [(fifo.as_path(), "a FIFO"), (Path::new("/dev/zero"), "a character device"), (dir.path(), "a directory")]
    {
        match NodeConfig::load_file(path) {
            Err(ConfigError::NotAFile { kind: k, .. }) => assert_eq!(k, kind),
            other => panic!("{} gave {other:?}", path.display()),
        }
    }
    let big = dir.path().join("big.toml");
    std::fs::write(&big, vec![b'#'; CONFIG_BYTES_MAX + 1]).expect("write");
    assert_eq!(NodeConfig::load_file(&big).expect_err("big").code(), ErrorCode::TooLarge);
    let missing = NodeConfig::load_file(&dir.path().join("none.toml")).expect_err("missing");
    assert_eq!(missing.code(), ErrorCode::NotFound);
}

#[test]
fn an_admin_address_beyond_loopback_needs_tls() {
    let e = NodeConfig::parse("name = \"n1\"\nadmin = \"0.0.0.0:7420\"\n").expect_err("plain HTTP beyond loopback");
    assert_eq!(e.key(), Some("admin"));
    let text = e.to_string();
    assert!(text.contains("admin_tls_cert") && text.contains("admin_tls_key"), "{text}");
    let c = NodeConfig::parse(
        "name = \"n1\"\nadmin = \"0.0.0.0:7420\"\nadmin_tls_cert = \"admin.pem\"\nadmin_tls_key = \"/etc/k.pem\"\n",
    )
    .expect("TLS beyond loopback");
    assert_eq!(c.admin_tls_cert, Some(PathBuf::from("admin.pem")));
    let c = NodeConfig { data_dir: Some(PathBuf::from("/var/lib/mgha")), ..c };
    assert_eq!(
        c.admin_tls_files(),
        Some((PathBuf::from("/var/lib/mgha/admin.pem"), PathBuf::from("/etc/k.pem"))),
        "relative paths are in the data directory"
    );
}

#[test]
fn the_admin_tls_key_must_be_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("admin.pem"), "CERT").expect("write");
    std::fs::write(dir.path().join("admin.key"), "KEY").expect("write");
    let key = dir.path().join("admin.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let c = NodeConfig {
        data_dir: Some(dir.path().to_path_buf()),
        admin_tls_cert: Some("admin.pem".into()),
        admin_tls_key: Some("admin.key".into()),
        ..NodeConfig::new("n1", "127.0.0.1:7420".parse().expect("addr"))
    };
    let e = c.read_admin_tls().expect_err("a key others may read");
    assert_eq!(e.key(), Some("admin_tls_key"));
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let pem = c.read_admin_tls().expect("reads").expect("TLS on");
    assert_eq!((pem.cert.as_str(), pem.key.as_str()), ("CERT", "KEY"));
    assert!(!format!("{pem:?}").contains("KEY"), "the key stays out of debug output");
    let gone = NodeConfig { admin_tls_cert: Some("missing.pem".into()), ..c.clone() };
    assert_eq!(gone.read_admin_tls().expect_err("missing").key(), Some("admin_tls_cert"));
    assert!(NodeConfig { admin_tls_cert: None, admin_tls_key: None, ..c }.read_admin_tls().expect("plain").is_none());
}
