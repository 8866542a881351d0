//! Compression of a peer connection once the hellos crossed (docs/protocol.md, "Blocks").
//!
//! Small frames (revisions of a few objects, acks, pings) repeat the same keys, type names,
//! authors and messages, so they are deflated with one compression context per direction: each
//! block is compressed against everything that context sent before it, and flushed at its end
//! so the peer can decode it at once. A writer frees its context when idle and makes none when
//! the process's budget of contexts is spent (it then sends raw); the reader needs no word of
//! either. A block holds the small frames
//! written between two flushes of the stream, up to [`BLOCK_IN_MAX`]: one frame when the caller
//! flushes after each (a live push), a run of them when it flushes after a run (a catch-up's
//! burst), which then costs one deflate flush, one TLS record and one write instead of one each. A one-host revision shrinks to
//! by a sixth to a third. Large frames (snapshot chunks, big revisions) pass through raw: they gain
//! little against the CPU they would cost, and a full sync is bound by that CPU. Tiny frames
//! (acks, pings) go raw too: they are mostly hashes, which do not compress.
//!
//! On the wire the plaintext frame stream becomes a stream of blocks, each a 4-byte big-endian
//! header then its bytes. The top bit set: a deflated block holding one or more whole frames, at
//! most [`BLOCK_IN_MAX`] bytes once inflated (checked while inflating, so a small block cannot
//! make the reader allocate more). The top bit clear: that many raw bytes of whole frames (one
//! large frame, or small ones too short to gain from deflate). The reader hands out the bytes
//! of the blocks as one stream and never looks at frame boundaries.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::wire::FRAME_BYTES_MAX;

/// Largest frame (length prefix included) sent deflated, and most plain bytes in one block;
/// larger frames go raw.
pub const BLOCK_IN_MAX: usize = 16 * 1024;
/// Largest deflated block accepted: deflate never grows its input by more than a few bytes per
/// 16 KiB block, so anything larger is not a block this protocol sends.
pub const BLOCK_OUT_MAX: usize = BLOCK_IN_MAX + 1024;
/// Smallest block (length prefixes included) sent deflated.
const DEFLATE_MIN: usize = 96;
const DEFLATED: u32 = 1 << 31;
/// A writer that deflated nothing for this long frees its compression context, giving its place
/// in the budget ([`DEFLATE_CONTEXTS_MAX`]) to a stream that sends, and a new one starts with
/// the next block to deflate. The reader needs no word of it: the new context's blocks continue
/// the same deflate stream and refer back only to what the new context sent.
const DEFLATE_IDLE: Duration = Duration::from_secs(10);
const _: () = assert!(FRAME_BYTES_MAX + 4 < DEFLATED as usize, "a raw block's length must leave the flag bit free");
/// Compression contexts alive at once in this process (about 430 KiB each). A server with many
/// domains may have a stream per domain and peer sending at once (a fill of every domain, a
/// catch-up after a restart): past this many, a writer without a context sends its blocks raw
/// until one is freed, so memory does not grow with the number of domains.
pub const DEFLATE_CONTEXTS_MAX: usize = 32;

/// A bound on the compression contexts alive at once.
struct Budget {
    live: AtomicUsize,
    max: usize,
}

/// The process's budget.
static CONTEXTS: Budget = Budget { live: AtomicUsize::new(0), max: DEFLATE_CONTEXTS_MAX };

/// A writer's compression context, holding its place in a budget.
struct DeflateContext {
    deflate: Compress,
    budget: &'static Budget,
}

impl DeflateContext {
    /// A new context, if the budget has room.
    fn take(budget: &'static Budget) -> Option<Box<DeflateContext>> {
        let taken =
            budget.live.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < budget.max).then_some(n + 1));
        taken.ok().map(|_| Box::new(DeflateContext { deflate: Compress::new(Compression::fast(), false), budget }))
    }
}

impl Drop for DeflateContext {
    fn drop(&mut self) {
        self.budget.live.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A peer stream whose frames are sent and received as blocks.
pub struct Compressed<S> {
    inner: S,
    w: Writer,
    r: Reader,
}

impl<S> Compressed<S> {
    pub fn new(inner: S) -> Compressed<S> {
        Compressed { inner, w: Writer::new(), r: Reader::new() }
    }
}

/// The sending side: reads the frame boundaries from the frames' own length prefixes.
struct Writer {
    /// Made at the first block to deflate (budget allowing), freed after [`DEFLATE_IDLE`]
    /// without one.
    deflate: Option<Box<DeflateContext>>,
    budget: &'static Budget,
    deflated_at: Option<Instant>,
    /// The length prefix of the next frame, as far as it has come.
    prefix: [u8; 4],
    prefix_len: usize,
    /// A small frame being gathered (prefix included) until it is whole.
    frame: Vec<u8>,
    frame_len: usize,
    /// Whole small frames waiting for the next flush (or a full block, or a large frame) to be
    /// sealed as one block: at most [`BLOCK_IN_MAX`] bytes.
    pending: Vec<u8>,
    /// Bytes of a large frame still to pass through raw.
    raw_left: usize,
    /// Block bytes ready for the inner stream, and how far they went.
    out: Vec<u8>,
    out_pos: usize,
}

impl Writer {
    fn new() -> Writer {
        Writer {
            deflate: None,
            budget: &CONTEXTS,
            deflated_at: None,
            prefix: [0; 4],
            prefix_len: 0,
            frame: Vec::new(),
            frame_len: 0,
            pending: Vec::new(),
            raw_left: 0,
            out: Vec::new(),
            out_pos: 0,
        }
    }

    /// A small frame is whole: it joins the pending block, which is sealed first if the frame
    /// would make it larger than a block may be.
    fn frame_done(&mut self) -> io::Result<()> {
        if self.pending.len() + self.frame.len() > BLOCK_IN_MAX {
            self.seal_block()?;
        }
        self.pending.extend_from_slice(&self.frame);
        self.frame.clear();
        self.frame_len = 0;
        Ok(())
    }

    /// Appends the pending frames to `out` as one block: deflated, or raw when too small to
    /// gain (an ack or a ping is mostly hashes and counters, and deflate's flush marker costs
    /// more than it saves). Called only once `out` was drained, or holds only what this call
    /// of `poll_write` put there after draining it.
    fn seal_block(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        if self.deflate.is_none() && self.pending.len() >= DEFLATE_MIN {
            self.deflate = DeflateContext::take(self.budget);
        }
        let deflate = match &mut self.deflate {
            Some(context) if self.pending.len() >= DEFLATE_MIN => &mut context.deflate,
            _ => {
                // Too small to gain, or no context to be had: raw.
                self.out.extend_from_slice(&(self.pending.len() as u32).to_be_bytes());
                self.out.extend_from_slice(&self.pending);
                self.pending.clear();
                // Pings pass here on an idle stream: the moment to free what it does not use.
                self.free_if_idle();
                return Ok(());
            }
        };
        let start = self.out.len();
        self.out.extend_from_slice(&[0; 4]);
        self.deflated_at = Some(Instant::now());
        let before_in = deflate.total_in();
        loop {
            let consumed = (deflate.total_in() - before_in) as usize;
            self.out.reserve(BLOCK_IN_MAX / 4 + 64);
            deflate
                .compress_vec(&self.pending[consumed..], &mut self.out, FlushCompress::Sync)
                .map_err(|e| io::Error::other(format!("deflate: {e}")))?;
            let done = (deflate.total_in() - before_in) as usize == self.pending.len();
            // A sync flush is complete once the input is consumed and the output was not full.
            if done && self.out.len() < self.out.capacity() {
                break;
            }
        }
        let len = (self.out.len() - start - 4) as u32;
        self.out[start..start + 4].copy_from_slice(&(len | DEFLATED).to_be_bytes());
        self.pending.clear();
        Ok(())
    }

    /// Frees the compression context and the buffers' room after [`DEFLATE_IDLE`] without a
    /// deflated block.
    fn free_if_idle(&mut self) {
        if self.deflated_at.is_some_and(|at| at.elapsed() >= DEFLATE_IDLE) {
            self.deflate = None;
            self.deflated_at = None;
            self.pending = Vec::new();
            self.frame.shrink_to(64);
        }
    }
}

/// The receiving side.
struct Reader {
    /// Made at the first deflated block: the side of a stream that only receives small raw
    /// frames (acks, pings) never needs one.
    inflate: Option<Box<Decompress>>,
    header: [u8; 4],
    header_len: usize,
    /// A deflated block being read whole.
    block: Vec<u8>,
    block_len: usize,
    /// Inflated bytes not yet handed out.
    plain: Vec<u8>,
    plain_pos: usize,
    raw_left: usize,
}

impl Reader {
    fn new() -> Reader {
        Reader {
            inflate: None,
            header: [0; 4],
            header_len: 0,
            block: Vec::new(),
            block_len: 0,
            plain: Vec::new(),
            plain_pos: 0,
            raw_left: 0,
        }
    }

    fn inflate_block(&mut self) -> io::Result<()> {
        self.plain.clear();
        self.plain_pos = 0;
        // Room for one byte more than allowed: a block that fills it is over the limit.
        self.plain.reserve_exact(BLOCK_IN_MAX + 1);
        let inflate = self.inflate.get_or_insert_with(|| Box::new(Decompress::new(false)));
        let before_in = inflate.total_in();
        loop {
            let consumed = (inflate.total_in() - before_in) as usize;
            let room = BLOCK_IN_MAX + 1 - self.plain.len();
            let mut chunk = Vec::with_capacity(room);
            inflate
                .decompress_vec(&self.block[consumed..], &mut chunk, FlushDecompress::Sync)
                .map_err(|e| invalid(format!("a deflated block does not inflate: {e}")))?;
            self.plain.extend_from_slice(&chunk);
            if self.plain.len() > BLOCK_IN_MAX {
                return Err(invalid(format!("a deflated block inflates beyond {BLOCK_IN_MAX} bytes")));
            }
            let consumed = (inflate.total_in() - before_in) as usize;
            if consumed == self.block.len() && chunk.len() < room {
                break;
            }
            if chunk.is_empty() && consumed < self.block.len() {
                return Err(invalid("a deflated block stops inflating before its end".into()));
            }
        }
        self.block = Vec::new();
        self.block_len = 0;
        Ok(())
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

impl<S: AsyncWrite + Unpin> Compressed<S> {
    /// Writes out the pending block bytes.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.w.out_pos < self.w.out.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.w.out[self.w.out_pos..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.w.out_pos += n;
        }
        self.w.out.clear();
        self.w.out_pos = 0;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Compressed<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if this.w.raw_left > 0 {
            // A large frame passes through as the caller writes it, with the inner stream's
            // back-pressure.
            let take = data.len().min(this.w.raw_left);
            let n = ready!(Pin::new(&mut this.inner).poll_write(cx, &data[..take]))?;
            this.w.raw_left -= n;
            return Poll::Ready(Ok(n));
        }
        if this.w.frame_len > 0 {
            // Gathering a small frame: this write belongs to it until it is whole.
            let take = data.len().min(this.w.frame_len - this.w.frame.len());
            this.w.frame.extend_from_slice(&data[..take]);
            if this.w.frame.len() == this.w.frame_len {
                this.w.frame_done()?;
            }
            return Poll::Ready(Ok(take));
        }
        {
            let take = data.len().min(4 - this.w.prefix_len);
            this.w.prefix[this.w.prefix_len..this.w.prefix_len + take].copy_from_slice(&data[..take]);
            this.w.prefix_len += take;
            if this.w.prefix_len == 4 {
                let total = u32::from_be_bytes(this.w.prefix) as usize + 4;
                if total > BLOCK_IN_MAX {
                    // The small frames before it go first, in their own block.
                    this.w.seal_block()?;
                    this.w.raw_left = total - 4;
                    this.w.out.extend_from_slice(&(total as u32).to_be_bytes());
                    this.w.out.extend_from_slice(&this.w.prefix);
                } else {
                    this.w.frame.extend_from_slice(&this.w.prefix);
                    this.w.frame_len = total;
                }
                this.w.prefix_len = 0;
                if total == 4 {
                    this.w.frame_done()?;
                }
            }
            Poll::Ready(Ok(take))
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // (Drained first: sealing appends to what is left to write.)
        ready!(this.poll_drain(cx))?;
        this.w.seal_block()?;
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        this.w.seal_block()?;
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Compressed<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.r.plain_pos < this.r.plain.len() {
                let n = buf.remaining().min(this.r.plain.len() - this.r.plain_pos);
                buf.put_slice(&this.r.plain[this.r.plain_pos..this.r.plain_pos + n]);
                this.r.plain_pos += n;
                if this.r.plain_pos == this.r.plain.len() {
                    // Room for a whole block is taken again at the next one; an idle stream keeps none.
                    this.r.plain = Vec::new();
                    this.r.plain_pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.r.raw_left > 0 {
                let limit = buf.remaining().min(this.r.raw_left);
                let mut sub = ReadBuf::new(buf.initialize_unfilled_to(limit));
                ready!(Pin::new(&mut this.inner).poll_read(cx, &mut sub))?;
                let n = sub.filled().len();
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
                }
                buf.advance(n);
                this.r.raw_left -= n;
                return Poll::Ready(Ok(()));
            }
            if this.r.block_len > 0 {
                while this.r.block.len() < this.r.block_len {
                    let start = this.r.block.len();
                    this.r.block.resize(this.r.block_len, 0);
                    let mut rb = ReadBuf::new(&mut this.r.block[start..]);
                    let polled = Pin::new(&mut this.inner).poll_read(cx, &mut rb);
                    let n = rb.filled().len();
                    this.r.block.truncate(start + n);
                    ready!(polled)?;
                    if n == 0 {
                        return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
                    }
                }
                this.r.inflate_block()?;
                continue;
            }
            // A block header.
            while this.r.header_len < 4 {
                let mut rb = ReadBuf::new(&mut this.r.header[this.r.header_len..]);
                ready!(Pin::new(&mut this.inner).poll_read(cx, &mut rb))?;
                let n = rb.filled().len();
                if n == 0 {
                    // A clean end between blocks is the end of the frame stream.
                    return if this.r.header_len == 0 {
                        Poll::Ready(Ok(()))
                    } else {
                        Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()))
                    };
                }
                this.r.header_len += n;
            }
            this.r.header_len = 0;
            let header = u32::from_be_bytes(this.r.header);
            let len = (header & !DEFLATED) as usize;
            if header & DEFLATED != 0 {
                if len == 0 || len > BLOCK_OUT_MAX {
                    return Poll::Ready(Err(invalid(format!("a deflated block of {len} bytes"))));
                }
                this.r.block_len = len;
            } else {
                if !(4..=FRAME_BYTES_MAX + 4).contains(&len) {
                    return Poll::Ready(Err(invalid(format!("a raw block of {len} bytes"))));
                }
                this.r.raw_left = len;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn frame(len: usize, seed: u8) -> Vec<u8> {
        let mut f = (len as u32).to_be_bytes().to_vec();
        // Repetitive text with a counter, as revisions are: compressible but not constant.
        f.extend((0..len).map(|i| if i % 7 == 0 { seed.wrapping_add(i as u8) } else { b"host-ipv4"[i % 9] }));
        f
    }

    /// Frames written in odd-sized pieces come out whole and in order, small and large alike.
    #[tokio::test]
    async fn frames_round_trip_in_order_whatever_their_size_and_the_write_pieces() {
        let sizes = [0usize, 1, 100, 300, 4000, BLOCK_IN_MAX - 4, BLOCK_IN_MAX - 3, 70_000, 5, 1_000_000, 250];
        let frames: Vec<Vec<u8>> = sizes.iter().enumerate().map(|(i, &n)| frame(n, i as u8)).collect();
        let (a, b) = tokio::io::duplex(64 * 1024);
        let expected: Vec<u8> = frames.concat();
        let writer = tokio::spawn(async move {
            let mut w = Compressed::new(a);
            for (i, f) in frames.iter().enumerate() {
                for piece in f.chunks(1 + i * 37 % 5000) {
                    w.write_all(piece).await.expect("write");
                }
                w.flush().await.expect("flush");
            }
            w.shutdown().await.expect("shutdown");
        });
        let mut r = Compressed::new(b);
        let mut got = Vec::new();
        r.read_to_end(&mut got).await.expect("read");
        writer.await.expect("writer");
        assert_eq!(got.len(), expected.len());
        assert!(got == expected, "the bytes differ");
    }

    /// Small frames shrink: later ones are compressed against the earlier ones.
    #[tokio::test]
    async fn repeated_small_frames_cost_less_than_their_size() {
        let (a, mut b) = tokio::io::duplex(1 << 20);
        let mut w = Compressed::new(a);
        let f = frame(280, 1);
        for _ in 0..100 {
            w.write_all(&f).await.expect("write");
            w.flush().await.expect("flush");
        }
        drop(w);
        let mut wire = Vec::new();
        b.read_to_end(&mut wire).await.expect("read");
        assert!(wire.len() < 100 * f.len() / 2, "{} bytes for {}", wire.len(), 100 * f.len());
    }

    /// Past the budget of contexts a writer sends its blocks raw, takes a context once one is
    /// freed, and the reader reads every frame either way.
    #[tokio::test]
    async fn a_writer_past_the_budget_sends_raw_until_a_context_is_free() {
        let budget: &'static Budget = Box::leak(Box::new(Budget { live: AtomicUsize::new(0), max: 1 }));
        let (a1, b1) = tokio::io::duplex(1 << 20);
        let (a2, b2) = tokio::io::duplex(1 << 20);
        let (mut w1, mut w2) = (Compressed::new(a1), Compressed::new(a2));
        w1.w.budget = budget;
        w2.w.budget = budget;
        let (mut expected1, mut expected2) = (Vec::new(), Vec::new());
        for i in 0..20u8 {
            let f = frame(300, i);
            for (w, expected) in [(&mut w1, &mut expected1), (&mut w2, &mut expected2)] {
                w.write_all(&f).await.expect("write");
                w.flush().await.expect("flush");
                expected.extend_from_slice(&f);
            }
        }
        assert!(w1.w.deflate.is_some() && w2.w.deflate.is_none(), "the first writer holds the one context");
        assert_eq!(budget.live.load(Ordering::Acquire), 1);
        // The first writer goes idle and frees its context at its next ping; the second takes it.
        w1.w.deflated_at = Instant::now().checked_sub(DEFLATE_IDLE);
        let ping = frame(8, 0);
        w1.write_all(&ping).await.expect("write");
        w1.flush().await.expect("flush");
        expected1.extend_from_slice(&ping);
        let f = frame(300, 99);
        w2.write_all(&f).await.expect("write");
        w2.flush().await.expect("flush");
        expected2.extend_from_slice(&f);
        assert!(w1.w.deflate.is_none() && w2.w.deflate.is_some(), "the freed context went to the second");
        drop((w1, w2));
        assert_eq!(budget.live.load(Ordering::Acquire), 0, "a dropped writer gives its context back");
        for (b, expected) in [(b1, expected1), (b2, expected2)] {
            let mut got = Vec::new();
            Compressed::new(b).read_to_end(&mut got).await.expect("read");
            assert!(got == expected, "the bytes differ");
        }
    }

    /// A writer idle for long frees its context at the next small raw block (a ping) and makes a
    /// new one at the next block to deflate; the reader, told nothing, reads every frame, and
    /// the side that only read raw blocks never made a context.
    #[tokio::test]
    async fn a_context_freed_when_idle_is_made_again_and_the_reader_follows() {
        let (a, b) = tokio::io::duplex(1 << 20);
        let mut w = Compressed::new(a);
        let mut r = Compressed::new(b);
        let ping = frame(8, 0);
        let big = frame(400, 1);
        let mut expected = Vec::new();
        for round in 0..3u8 {
            for i in 0..5u8 {
                let f = frame(300 + usize::from(i), round * 10 + i);
                w.write_all(&f).await.expect("write");
                w.flush().await.expect("flush");
                expected.extend_from_slice(&f);
            }
            assert!(w.w.deflate.is_some(), "deflating made a context");
            // As if the last deflated block was long ago: the next ping frees the context.
            w.w.deflated_at = Instant::now().checked_sub(DEFLATE_IDLE);
            w.write_all(&ping).await.expect("write");
            w.flush().await.expect("flush");
            expected.extend_from_slice(&ping);
            assert!(w.w.deflate.is_none(), "an idle context is freed");
            // The same text again, compressed by the new context against nothing before it.
            w.write_all(&big).await.expect("write");
            w.flush().await.expect("flush");
            expected.extend_from_slice(&big);
        }
        drop(w);
        let mut got = Vec::new();
        r.read_to_end(&mut got).await.expect("read");
        assert!(got == expected, "the bytes differ");
        assert!(r.r.inflate.is_some(), "deflated blocks made the reader's context");
        assert!(r.w.deflate.is_none(), "the reader wrote nothing and made no context");
    }

    /// Frames written as a run and flushed once share blocks: they arrive whole and in order,
    /// small and large interleaved, and cost fewer bytes than the same frames flushed one by one.
    #[tokio::test]
    async fn a_run_of_frames_flushed_once_shares_blocks_and_keeps_its_order() {
        let sizes = [300usize, 120, 5, 4000, 70_000, 200, 0, BLOCK_IN_MAX - 4, 250, 9000, 9000, 40];
        let frames: Vec<Vec<u8>> = (0..400).map(|i| frame(sizes[i % sizes.len()], i as u8)).collect();
        let expected: Vec<u8> = frames.concat();
        let wire_of = |flush_each: bool| {
            let frames = frames.clone();
            async move {
                let (a, mut b) = tokio::io::duplex(64 * 1024);
                let writer = tokio::spawn(async move {
                    let mut w = Compressed::new(a);
                    for f in &frames {
                        w.write_all(f).await.expect("write");
                        if flush_each {
                            w.flush().await.expect("flush");
                        }
                    }
                    w.shutdown().await.expect("shutdown");
                });
                let mut wire = Vec::new();
                b.read_to_end(&mut wire).await.expect("read");
                writer.await.expect("writer");
                wire
            }
        };
        let (run, each) = (wire_of(false).await, wire_of(true).await);
        assert_eq!(read_all(run.clone()).await.expect("inflates"), expected);
        assert_eq!(read_all(each.clone()).await.expect("inflates"), expected);
        assert!(run.len() < each.len(), "a run took {} bytes, flushed one by one {}", run.len(), each.len());
    }

    async fn read_all(wire: Vec<u8>) -> io::Result<Vec<u8>> {
        let mut r = Compressed::new(&wire[..]);
        let mut out = Vec::new();
        r.read_to_end(&mut out).await.map(|_| out)
    }

    #[tokio::test]
    async fn a_block_that_inflates_beyond_the_limit_is_refused() {
        // One deflated block of zeros far larger than a small frame may be.
        let mut c = Compress::new(Compression::best(), false);
        let zeros = vec![0u8; 1 << 20];
        let mut z = Vec::with_capacity(1 << 20);
        c.compress_vec(&zeros, &mut z, FlushCompress::Sync).expect("deflate");
        assert!(z.len() <= BLOCK_OUT_MAX, "the bomb fits a block header ({} bytes)", z.len());
        let mut wire = ((z.len() as u32) | DEFLATED).to_be_bytes().to_vec();
        wire.extend_from_slice(&z);
        let e = read_all(wire).await.expect_err("refused");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
    }

    #[tokio::test]
    async fn garbage_blocks_and_oversized_headers_are_refused() {
        let mut wire = (8u32 | DEFLATED).to_be_bytes().to_vec();
        wire.extend_from_slice(&[0xff; 8]);
        assert_eq!(read_all(wire).await.expect_err("garbage").kind(), io::ErrorKind::InvalidData);
        let wire = ((BLOCK_OUT_MAX as u32 + 1) | DEFLATED).to_be_bytes().to_vec();
        assert_eq!(read_all(wire).await.expect_err("oversized").kind(), io::ErrorKind::InvalidData);
        let wire = ((FRAME_BYTES_MAX + 5) as u32).to_be_bytes().to_vec();
        assert_eq!(read_all(wire).await.expect_err("raw oversized").kind(), io::ErrorKind::InvalidData);
        let mut wire = 100u32.to_be_bytes().to_vec();
        wire.extend_from_slice(&[1; 10]);
        assert_eq!(read_all(wire).await.expect_err("cut short").kind(), io::ErrorKind::UnexpectedEof);
    }
}
