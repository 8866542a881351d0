//! The admin API over HTTPS (`admin_tls_cert`, `admin_tls_key`): a real daemon with a certificate
//! of a test CA, reached by the real CLI through `--endpoint https://…` with `--ca`, and through
//! its data directory; what fails without the CA or over plain HTTP, and that a client that never
//! starts the TLS handshake is closed within the header deadline without blocking anyone else.

mod support;

use std::io::Read;
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
use support::*;

/// The daemon's header deadline (`ADMIN_HEADER_READ_TIMEOUT`), with room for a loaded machine.
const HANDSHAKE_CLOSE_WITHIN: Duration = Duration::from_secs(40);

/// A test CA and a server certificate for 127.0.0.1 and localhost: (CA PEM, chain PEM (the
/// server's certificate, then the CA), server key PEM).
fn test_pki() -> (String, String, String) {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::default();
    ca.distinguished_name.push(DnType::CommonName, "admin test CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().expect("server key");
    let mut server = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
    server.subject_alt_names.push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
    server.distinguished_name.push(DnType::CommonName, "mgha admin");
    let cert = server.signed_by(&key, &issuer).expect("server certificate");
    (ca_cert.pem(), format!("{}{}", cert.pem(), ca_cert.pem()), key.serialize_pem())
}

/// `mgha ARGS`: (exit code, stderr).
fn run(args: &[&str]) -> (Option<i32>, String) {
    let out = mgha(args);
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn the_admin_api_serves_https_with_the_configured_certificate() {
    let scratch = Scratch::new();
    let mut a = scratch.init("a");
    let (ca, chain, key) = test_pki();
    std::fs::write(a.dir.join("admin.pem"), chain).expect("write");
    let key_file = a.dir.join("admin.key");
    std::fs::write(&key_file, key).expect("write");
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    // Relative paths: in the data directory.
    a.put_config("admin_tls_cert", "\"admin.pem\"");
    a.put_config("admin_tls_key", "\"admin.key\"");
    let ca_file = scratch.file("ca.pem", &ca);
    let token = std::fs::read_to_string(a.dir.join("admin.token")).expect("token");
    let token_file = scratch.file("a.token", &token);

    // A key other users may read is refused before the daemon starts.
    let (code, err) = run(&["run", "-d", a.d()]);
    assert_ne!(code, Some(0), "{err}");
    assert!(err.contains("admin_tls_key") && err.contains("chmod 600"), "{err}");
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");

    a.spawn();
    // Through the data directory: https, trusting the node's own certificate file.
    wait_until("the daemon answers over HTTPS", || mgha(&["status", "-d", a.d(), "--json"]).status.success());
    let status = ok_json(&["status", "-d", a.d(), "--json"]);
    assert_eq!(status["node"]["name"], "a");
    assert!(ok(&["status", "-d", a.d()]).contains("https://"), "status names the way in");

    let port = a.admin().rsplit_once(':').expect("HOST:PORT").1.to_string();
    let https = format!("https://127.0.0.1:{port}");
    let by_name = format!("https://localhost:{port}");
    for endpoint in [&https, &by_name] {
        let status =
            ok_json(&["status", "--json", "--endpoint", endpoint, "--token-file", s(&token_file), "--ca", s(&ca_file)]);
        assert_eq!(status["node"]["name"], "a", "{endpoint}");
    }

    // Without the CA, the public roots do not vouch for the test CA: a clear TLS error.
    let (code, err) = run(&["status", "--endpoint", &https, "--token-file", s(&token_file)]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("--ca") && !err.contains("panicked"), "{err}");
    // Another CA is no better.
    let (other_ca, _, _) = test_pki();
    let other = scratch.file("other-ca.pem", &other_ca);
    let (code, err) = run(&["status", "--endpoint", &https, "--token-file", s(&token_file), "--ca", s(&other)]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("other-ca.pem") && !err.contains("panicked"), "{err}");
    // Plain HTTP to the HTTPS port gets no answer.
    let plain = format!("http://127.0.0.1:{port}");
    let (code, err) = run(&["status", "--endpoint", &plain, "--token-file", s(&token_file)]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("https://") && !err.contains("panicked"), "{err}");

    // A client that opens TCP and never says hello holds no one up, and is closed in time.
    let mut silent = TcpStream::connect(a.admin()).expect("connect");
    let opened = Instant::now();
    let status =
        ok_json(&["status", "--json", "--endpoint", &https, "--token-file", s(&token_file), "--ca", s(&ca_file)]);
    assert_eq!(status["node"]["name"], "a", "served while a handshake is pending");
    silent.set_read_timeout(Some(HANDSHAKE_CLOSE_WITHIN)).expect("timeout");
    let mut buf = [0u8; 64];
    match silent.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("the daemon sent {n} bytes to a client that never spoke"),
        Err(e) => assert!(
            !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
            "the silent connection was still open after {:?}",
            opened.elapsed()
        ),
    }
    assert!(a.terminate() == Some(0), "{}", a.log());
}
