//! What a client without a member certificate can make a node allocate: the amplification
//! frame (a 64 MiB snapshot chunk of empty byte strings, which once grew a node from 88 to
//! 921 MiB) is refused from its length alone, and the node's peak memory barely moves. Alone in
//! its binary, so that the peak measured is this test's.

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use mgha_core::engine::EngineOptions;
use mgha_sync::tls::{joiner_client, member_server_name, MemberTls};
use mgha_tests::inproc::{hosts, Cluster};

/// Peak resident memory of this process (the node runs in it), from /proc/self/status.
fn vm_hwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("proc status");
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM");
    line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("a number")
}

/// The bound on what three amplification frames may add to the node's peak: far under one
/// frame (64 MiB), let alone its decoding.
const PEAK_GROWTH_KIB_MAX: u64 = 16 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_amplification_frame_without_a_certificate_is_refused_before_allocation() {
    let c = Cluster::start(1, false, EngineOptions::default()).await;
    let fp = MemberTls::load(&c.nodes[0].files()).expect("tls").ca_fingerprint;
    // MessagePack bin8 of length 0, over and over: 32 million empty byte strings in 64 MiB.
    let filler = [0xc4u8, 0x00].repeat(512 * 1024);
    let before = vm_hwm_kib();
    for _ in 0..3 {
        let tcp = TcpStream::connect(c.primary_addr()).await.expect("connect");
        let mut tls = TlsConnector::from(joiner_client(fp).expect("config"))
            .connect(member_server_name(), tcp)
            .await
            .expect("TLS");
        let frame_len: u32 = 64 * 1024 * 1024;
        tls.write_all(&frame_len.to_be_bytes()).await.expect("the length goes out");
        let mut sent = 0usize;
        while sent < frame_len as usize {
            match tokio::time::timeout(Duration::from_secs(10), tls.write_all(&filler)).await {
                Ok(Ok(())) => sent += filler.len(),
                _ => break,
            }
        }
        // The node closed the connection after the length: far less than the frame got through
        // (what socket buffers hold at most).
        assert!(sent < 16 * 1024 * 1024, "{sent} bytes of the frame were read");
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut rest)).await;
    }
    let after = vm_hwm_kib();
    eprintln!("peak resident memory: {before} KiB before, {after} KiB after three amplification frames");
    assert!(after.saturating_sub(before) < PEAK_GROWTH_KIB_MAX, "grew from {before} to {after} KiB");
    c.engine(0).publish("admin", &hosts("after", 1, 0)).expect("publish");
    c.converged(Duration::from_secs(10)).await;
}
