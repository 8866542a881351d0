//! Readiness for service managers: the sd_notify protocol of systemd (`Type=notify`), spoken by
//! the daemon itself. When `$NOTIFY_SOCKET` names a Unix datagram socket (a path, or an
//! abstract name written `@name`), the daemon sends `READY=1` once its admin API listens and
//! `STOPPING=1` when a stop signal arrives. Without the variable nothing is sent. A failed send
//! is logged, never fatal: the service manager's timeout is the judge.

use std::os::unix::net::UnixDatagram;

/// The variable systemd sets for `Type=notify` services.
pub const NOTIFY_SOCKET_ENV: &str = "NOTIFY_SOCKET";

/// Sends `state` (`READY=1`, `STOPPING=1`, ...) to the service manager, if there is one.
pub fn notify(state: &str) {
    let Some(target) = std::env::var_os(NOTIFY_SOCKET_ENV) else { return };
    let target = target.to_string_lossy().into_owned();
    match send(&target, state) {
        Ok(()) => tracing::debug!(socket = %target, state, "told the service manager"),
        Err(e) => tracing::warn!(socket = %target, state, error = %e, "cannot notify the service manager"),
    }
}

fn send(target: &str, state: &str) -> std::io::Result<()> {
    let socket = UnixDatagram::unbound()?;
    match target.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
            socket.send_to_addr(state.as_bytes(), &addr)?;
        }
        None => {
            socket.send_to(state.as_bytes(), target)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_to_a_path_socket() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).expect("bind");
        send(path.to_str().expect("utf-8"), "READY=1").expect("send");
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"READY=1");
    }

    #[test]
    fn sends_to_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("mgha-notify-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).expect("addr");
        let listener = UnixDatagram::bind_addr(&addr).expect("bind");
        send(&format!("@{name}"), "STOPPING=1").expect("send");
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"STOPPING=1");
    }
}
