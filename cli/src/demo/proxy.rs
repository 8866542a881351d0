//! A TCP forwarder with a partition switch, which the demo puts in front of the Primary's peer
//! port from the start (the Primary advertises the proxy's address, so every member dials it
//! there). Partitioned, it drops the connections it carries and refuses new ones: the others
//! lose the Primary, while the Primary goes on as if nothing happened. Its own runtime, so the
//! demo's synchronous code just calls it.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::Context;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A running proxy; dropping it closes the listener and every connection.
pub struct Proxy {
    addr: SocketAddr,
    partitioned: watch::Sender<bool>,
    /// Owns the tasks: dropping the runtime stops them all.
    _runtime: tokio::runtime::Runtime,
}

impl Proxy {
    /// Listens on a free loopback port and forwards each connection to `target`.
    pub fn start(target: SocketAddr) -> anyhow::Result<Proxy> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("demo-proxy")
            .enable_all()
            .build()
            .context("starting the proxy's runtime")?;
        let listener =
            runtime.block_on(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))).context("the proxy cannot listen")?;
        let addr = listener.local_addr().context("the proxy's address")?;
        let (partitioned, rx) = watch::channel(false);
        runtime.spawn(accept(listener, target, rx));
        Ok(Proxy { addr, partitioned, _runtime: runtime })
    }

    /// Where the proxy listens: the address to advertise.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Cuts every connection through the proxy and refuses new ones until [`Proxy::heal`].
    pub fn partition(&self) {
        self.partitioned.send_replace(true);
    }

    /// Forwards again.
    pub fn heal(&self) {
        self.partitioned.send_replace(false);
    }
}

async fn accept(listener: TcpListener, target: SocketAddr, partitioned: watch::Receiver<bool>) {
    loop {
        match listener.accept().await {
            // Refused: closed at once, as an unreachable host's connection would fail.
            Ok((client, _)) if *partitioned.borrow() => drop(client),
            Ok((client, _)) => {
                tokio::spawn(forward(client, target, partitioned.clone()));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// Carries one connection both ways until either side closes it or a partition cuts it.
async fn forward(mut client: TcpStream, target: SocketAddr, mut partitioned: watch::Receiver<bool>) {
    let Ok(mut server) = TcpStream::connect(target).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = partitioned.wait_for(|cut| *cut) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn echo_server() -> SocketAddr {
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        let addr = listener.local_addr().expect("addr");
        std::thread::spawn(move || {
            for mut conn in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut buf = [0u8; 64];
                    while let Ok(n) = conn.read(&mut buf) {
                        if n == 0 || conn.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    fn echoes(addr: SocketAddr) -> bool {
        let Ok(mut c) = std::net::TcpStream::connect(addr) else { return false };
        let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
        let mut buf = [0u8; 4];
        c.write_all(b"ping").is_ok() && c.read_exact(&mut buf).is_ok() && &buf == b"ping"
    }

    #[test]
    fn forwards_cuts_on_partition_and_heals() {
        let proxy = Proxy::start(echo_server()).expect("proxy");
        assert!(echoes(proxy.addr()));
        let mut open = std::net::TcpStream::connect(proxy.addr()).expect("connect");
        open.write_all(b"ping").expect("write");
        let mut buf = [0u8; 4];
        open.read_exact(&mut buf).expect("echo");
        proxy.partition();
        let _ = open.set_read_timeout(Some(Duration::from_secs(2)));
        assert!(matches!(open.read(&mut buf), Ok(0) | Err(_)), "a partition cuts open connections");
        assert!(!echoes(proxy.addr()), "and refuses new ones");
        proxy.heal();
        assert!(echoes(proxy.addr()));
    }
}
