//! What a member (a peer with a certificate of the cluster) can make a node allocate with one
//! frame: the amplification frame, a 64 MiB snapshot chunk of 33 million empty byte strings that
//! would decode to about a gigabyte, is read (its length is within the frame limit) but refused
//! from its shape before it is decoded, and the node's peak memory grows by the frame's bytes,
//! not by its decoding. Alone in its binary, so that the peak measured is this test's.

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use mgha_core::engine::EngineOptions;
use mgha_sync::tls::{member_server_name, MemberTls};
use mgha_sync::wire::{encode_frame, Msg, FRAME_BYTES_MAX};
use mgha_tests::inproc::{hosts, Cluster};

/// Peak resident memory of this process (the node runs in it), from /proc/self/status.
fn vm_hwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("proc status");
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM");
    line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("a number")
}

/// The bound on what three amplification frames, one after the other, may add to the node's
/// peak: one frame's bytes (64 MiB, read before its shape can be known) and buffers, far under
/// what decoding it would take (about 800 MiB).
const PEAK_GROWTH_KIB_MAX: u64 = 128 * 1024;

/// The head of a frame of exactly [`FRAME_BYTES_MAX`] payload bytes, `SnapshotChunk { objects }`
/// whose array holds as many empty byte strings as fit (its length honest), and that count. The
/// byte strings follow as [`EMPTY_BIN`] pairs; they are streamed, so that the test's own buffers
/// do not raise the peak it measures.
fn amplification_head() -> (Vec<u8>, usize) {
    let empty = encode_frame(&Msg::SnapshotChunk { objects: Vec::new() }).expect("encodes");
    // The empty array (fixarray 0x90) is the encoding's last byte: put an array32 in its place.
    assert_eq!(empty.last(), Some(&0x90));
    let prefix = &empty[4..empty.len() - 1];
    let count = (FRAME_BYTES_MAX - prefix.len() - 5) / 2;
    let len = prefix.len() + 5 + 2 * count;
    let mut head = Vec::new();
    head.extend_from_slice(&(len as u32).to_be_bytes());
    head.extend_from_slice(prefix);
    head.push(0xdd);
    head.extend_from_slice(&(count as u32).to_be_bytes());
    (head, count)
}

/// MessagePack bin8 of length 0: an empty byte string in two bytes.
const EMPTY_BIN: [u8; 2] = [0xc4, 0x00];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_amplification_frame_from_a_member_is_refused_before_decoding() {
    // The handshake deadline covers the first frame: long enough for 64 MiB through TLS in a
    // debug build, so that the node reads all of it and the refusal is the shape's.
    let c = Cluster::start_tuned(1, false, EngineOptions::default(), |cfg| cfg.handshake_timeout_ms = 60_000).await;
    let member = MemberTls::load(&c.nodes[1].files()).expect("the secondary's certificate");
    let (head, count) = amplification_head();
    let filler = EMPTY_BIN.repeat(256 * 1024);
    let before = vm_hwm_kib();
    for _ in 0..3 {
        let tcp = TcpStream::connect(c.primary_addr()).await.expect("connect");
        let mut tls = TlsConnector::from(member.client.clone())
            .connect(member_server_name(), tcp)
            .await
            .expect("mutual TLS with a member certificate");
        let send = async {
            tls.write_all(&head).await?;
            let mut left = count;
            while left > 0 {
                let n = left.min(filler.len() / 2);
                tls.write_all(&filler[..2 * n]).await?;
                left -= n;
            }
            tls.flush().await
        };
        tokio::time::timeout(Duration::from_secs(60), send)
            .await
            .expect("the node reads the whole frame in time")
            .expect("the whole frame goes out: its length is within the limit");
        // The node answers nothing a member could use and closes the connection.
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(30), tls.read_to_end(&mut rest)).await;
        assert!(closed.is_ok(), "the node kept the connection open");
    }
    let after = vm_hwm_kib();
    eprintln!("peak resident memory: {before} KiB before, {after} KiB after three amplification frames from a member");
    assert!(after.saturating_sub(before) < PEAK_GROWTH_KIB_MAX, "grew from {before} to {after} KiB");
    c.engine(0).publish("admin", &hosts("after", 1, 0)).expect("publish");
    c.converged(Duration::from_secs(10)).await;
}
