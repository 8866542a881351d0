//! A fault-injecting TCP proxy for tests: it forwards connections to a target and can delay
//! bytes, drop every connection, cut connections after a number of bytes (mid-frame), and
//! partition (refuse and drop) until healed. Plain threads, so any test can use it.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Default)]
struct Faults {
    delay_ms: u64,
    partitioned: bool,
    /// Cut each new connection after this many bytes towards the target's peer.
    cut_after_bytes: Option<usize>,
}

#[derive(Default)]
struct Shared {
    faults: Mutex<Faults>,
    conns: Mutex<Vec<TcpStream>>,
    stop: AtomicBool,
}

/// A running proxy; stopped (and every connection closed) on drop.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `target`.
    pub fn start(target: SocketAddr) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        std::thread::spawn(move || accept_loop(listener, target, s));
        Ok(FaultProxy { addr, shared })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Delays every forwarded chunk by `ms`.
    pub fn set_delay_ms(&self, ms: u64) {
        lock(&self.shared.faults).delay_ms = ms;
    }

    /// Cuts new connections after `bytes` bytes from the client, typically mid-frame.
    pub fn cut_after(&self, bytes: Option<usize>) {
        lock(&self.shared.faults).cut_after_bytes = bytes;
    }

    /// Closes every open connection (new ones are accepted).
    pub fn drop_connections(&self) {
        for c in lock(&self.shared.conns).drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    /// Drops every connection and refuses new ones until [`FaultProxy::heal`].
    pub fn partition(&self) {
        lock(&self.shared.faults).partitioned = true;
        self.drop_connections();
    }

    pub fn heal(&self) {
        lock(&self.shared.faults).partitioned = false;
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.drop_connections();
    }
}

fn accept_loop(listener: TcpListener, target: SocketAddr, shared: Arc<Shared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((client, _)) => {
                if lock(&shared.faults).partitioned {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let _ = client.set_nonblocking(false);
                let Ok(server) = TcpStream::connect_timeout(&target, Duration::from_secs(2)) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let cut = lock(&shared.faults).cut_after_bytes;
                for s in [&client, &server] {
                    if let Ok(c) = s.try_clone() {
                        lock(&shared.conns).push(c);
                    }
                }
                if let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) {
                    let sh = shared.clone();
                    std::thread::spawn(move || pump(client, server, cut, sh));
                    let sh = shared.clone();
                    std::thread::spawn(move || pump(s2, c2, None, sh));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(5)),
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, cut_after: Option<usize>, shared: Arc<Shared>) {
    let mut buf = [0u8; 16 * 1024];
    let mut total = 0usize;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let delay = lock(&shared.faults).delay_ms;
        if delay > 0 {
            std::thread::sleep(Duration::from_millis(delay));
        }
        let mut end = n;
        if let Some(limit) = cut_after {
            if total + n >= limit {
                end = limit.saturating_sub(total);
                let _ = to.write_all(&buf[..end]);
                break;
            }
        }
        if to.write_all(&buf[..end]).is_err() || shared.stop.load(Ordering::SeqCst) {
            break;
        }
        total += end;
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo_server() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        std::thread::spawn(move || {
            for mut s in l.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut b = [0u8; 1024];
                    while let Ok(n) = s.read(&mut b) {
                        if n == 0 || s.write_all(&b[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    #[test]
    fn forwards_then_partitions_then_heals() {
        let proxy = FaultProxy::start(echo_server()).expect("proxy");
        let mut c = TcpStream::connect(proxy.addr()).expect("connect");
        c.write_all(b"ping").expect("write");
        let mut b = [0u8; 4];
        c.read_exact(&mut b).expect("echo");
        assert_eq!(&b, b"ping");
        proxy.partition();
        let mut one = [0u8; 1];
        assert!(matches!(c.read(&mut one), Ok(0) | Err(_)), "partition closes open connections");
        proxy.heal();
        let mut c = TcpStream::connect(proxy.addr()).expect("connect after heal");
        c.write_all(b"pong").expect("write");
        c.read_exact(&mut b).expect("echo");
        assert_eq!(&b, b"pong");
    }

    #[test]
    fn cuts_mid_stream() {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let target = l.local_addr().expect("addr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            if let Some(Ok(mut s)) = l.incoming().next() {
                let mut got = Vec::new();
                let _ = s.read_to_end(&mut got);
                let _ = tx.send(got);
            }
        });
        let proxy = FaultProxy::start(target).expect("proxy");
        proxy.cut_after(Some(3));
        let mut c = TcpStream::connect(proxy.addr()).expect("connect");
        let _ = c.write_all(b"abcdef");
        let got = rx.recv_timeout(Duration::from_secs(5)).expect("target saw the connection end");
        assert_eq!(got, b"abc");
    }
}
