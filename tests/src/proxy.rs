//! A fault-injecting TCP proxy for tests and the benchmark: it forwards connections to a target,
//! counts the bytes it forwards, and can delay bytes (a long link: latency without a throughput
//! cap), drop every connection, cut connections after a number of bytes (mid-frame), and
//! partition (refuse and drop) until healed, on its own address and on return routes towards the
//! proxied server's peers. Plain threads, so any test can use it.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
    /// Bytes delivered towards the target, and from it back to the clients.
    bytes_to_target: AtomicU64,
    bytes_from_target: AtomicU64,
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
        std::thread::spawn(move || accept_loop(listener, target, s, false));
        Ok(FaultProxy { addr, shared })
    }

    /// Another entry into this proxy, for the connections the proxied server dials to a peer at
    /// `target`: two servers share one link, which either of them may dial, so a peer that
    /// advertises this address is reached through the proxy too. Every fault applies to it, and
    /// its bytes count the other way round (towards `target` is from the proxied server).
    /// Returns the address to advertise for `target`.
    pub fn add_return_route(&self, target: SocketAddr) -> std::io::Result<SocketAddr> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let s = self.shared.clone();
        std::thread::spawn(move || accept_loop(listener, target, s, true));
        Ok(addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Delays every forwarded byte by `ms`, in each direction (a round trip gains twice `ms`).
    /// Chunks in flight are not held back by one another: the link keeps its throughput, up to
    /// 16 MiB in flight per direction.
    pub fn set_delay_ms(&self, ms: u64) {
        lock(&self.shared.faults).delay_ms = ms;
    }

    /// Bytes delivered so far towards the target (from every client), and from the target back.
    pub fn bytes_forwarded(&self) -> (u64, u64) {
        (self.shared.bytes_to_target.load(Ordering::Relaxed), self.shared.bytes_from_target.load(Ordering::Relaxed))
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

/// `reverse`: a return route (see [`FaultProxy::add_return_route`]), whose bytes count the other
/// way round.
fn accept_loop(listener: TcpListener, target: SocketAddr, shared: Arc<Shared>, reverse: bool) {
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
                    std::thread::spawn(move || pump(client, server, cut, sh, !reverse));
                    let sh = shared.clone();
                    std::thread::spawn(move || pump(s2, c2, None, sh, reverse));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(5)),
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// Bytes read per chunk, and chunks a direction holds in its delay line: at most
/// `PUMP_CHUNK_BYTES * DELAY_LINE_CHUNKS_MAX` (16 MiB) in flight, the bandwidth-delay product of
/// the emulated link (800 MB/s at 20 ms one way).
const PUMP_CHUNK_BYTES: usize = 64 * 1024;
const DELAY_LINE_CHUNKS_MAX: usize = 256;

/// Forwards one direction. A reader stamps each chunk with the moment it is due (read time plus
/// the delay) and a writer sends it then, so a delay adds latency without limiting throughput,
/// as a long link does (sleeping before each write would allow one chunk per delay).
fn pump(from: TcpStream, to: TcpStream, cut_after: Option<usize>, shared: Arc<Shared>, to_target: bool) {
    let (tx, rx) = std::sync::mpsc::sync_channel::<(Instant, Vec<u8>)>(DELAY_LINE_CHUNKS_MAX);
    let writer = match from.try_clone() {
        Ok(from2) => {
            let sh = shared.clone();
            std::thread::spawn(move || deliver(rx, from2, to, sh, to_target))
        }
        Err(_) => {
            let _ = from.shutdown(Shutdown::Both);
            let _ = to.shutdown(Shutdown::Both);
            return;
        }
    };
    read_into_line(from, tx, cut_after, &shared);
    let _ = writer.join();
}

/// The reading half of [`pump`]: ends at the end of the stream, an error, the cut, or when the
/// writer has gone.
fn read_into_line(
    mut from: TcpStream,
    tx: std::sync::mpsc::SyncSender<(Instant, Vec<u8>)>,
    cut_after: Option<usize>,
    shared: &Shared,
) {
    let mut buf = vec![0u8; PUMP_CHUNK_BYTES];
    let mut total = 0usize;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let due = Instant::now() + Duration::from_millis(lock(&shared.faults).delay_ms);
        let mut end = n;
        let cut = cut_after.is_some_and(|limit| total + n >= limit);
        if let Some(limit) = cut_after.filter(|_| cut) {
            end = limit.saturating_sub(total);
        }
        if tx.send((due, buf[..end].to_vec())).is_err() || cut {
            break;
        }
        total += end;
    }
}

/// The writing half of [`pump`]: sends each chunk when it is due, then closes both sockets once
/// the line is empty and the reader has ended (what was in flight still arrives, before the end).
fn deliver(
    rx: std::sync::mpsc::Receiver<(Instant, Vec<u8>)>,
    from: TcpStream,
    mut to: TcpStream,
    shared: Arc<Shared>,
    to_target: bool,
) {
    let counter = if to_target { &shared.bytes_to_target } else { &shared.bytes_from_target };
    while let Ok((due, chunk)) = rx.recv() {
        let wait = due.saturating_duration_since(Instant::now());
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
        if shared.stop.load(Ordering::SeqCst) || to.write_all(&chunk).is_err() {
            break;
        }
        counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
    }
    // Unblocks the reader too, if it still waits on its socket.
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
