//! The flooding connection of the `flood` scenario: one joined client that writes `echo`
//! pushes as fast as its socket takes them and either reads and counts the replies
//! (`--flooder-reads`) or never reads at all, so that its kernel receive buffer fills
//! and stays full, like a client whose reader has stalled.
//!
//! After the join it frames by itself instead of going through `Conn`: writing must never
//! wait for reading. One readiness loop: when the socket is writable, one `write` of what
//! is left of a batch of pre-framed pushes; when it is readable (and the flooder reads),
//! one `read`, whose complete frames are counted. Between two system calls it yields, so
//! the healthy clients on the same current-thread runtime are served between them and
//! their round trips measure the server, not the flooder's use of the load generator's
//! core.
//!
//! The servers under test neither ping nor fragment their replies; the flooder answers no
//! ping and skips continuation frames.

use std::cell::Cell;
use std::io::{self, Write};
use std::rc::Rc;

use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::time::{sleep_until, Instant};

use crate::group::Client;
use crate::phx;
use crate::sys::mono_ns;
use crate::ws::{self, OP_CLOSE, OP_TEXT};

/// Pushes framed at once: about 25 KB, a few writes' worth for a socket that keeps up.
const BATCH: usize = 512;

/// Initial read buffer; a frame larger than it makes it grow.
const READ_BUF: usize = 64 * 1024;

/// How the flooder's connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// Still connected when the flood was over.
    Open,
    /// The server sent a close frame (with its status code, if any).
    CloseFrame(Option<u16>),
    /// The connection ended without a close frame being read: EOF, reset, broken pipe.
    Gone(String),
}

impl End {
    pub fn is_disconnected(&self) -> bool {
        !matches!(self, End::Open)
    }

    /// For the JSON result: "open", "close frame 1008", "reset: ...".
    pub fn describe(&self) -> String {
        match self {
            End::Open => "open".to_string(),
            End::CloseFrame(Some(code)) => format!("close frame {code}"),
            End::CloseFrame(None) => "close frame without a code".to_string(),
            End::Gone(why) => why.clone(),
        }
    }
}

/// What the flood did.
#[derive(Debug)]
pub struct Outcome {
    /// Pushes written whole into the socket.
    pub pushes: u64,
    /// `phx_reply` frames read (0 when the flooder does not read).
    pub replies: u64,
    pub end: End,
    /// `mono_ns` when the connection was found ended (None while open).
    pub ended_ns: Option<u64>,
}

pub struct Flooder {
    stream: TcpStream,
    topic: String,
    join_ref: String,
    next_ref: u64,
    mask_state: u64,
    /// Pre-framed pushes; `batch[..written]` is in the socket.
    batch: Vec<u8>,
    written: usize,
    /// End offset of each push in `batch`; `ends[..counted]` are counted in `pushes`.
    ends: Vec<usize>,
    counted: usize,
    msg: Vec<u8>,
    payload: Vec<u8>,
    /// Bytes read and not yet parsed: `inbuf[..filled]`.
    inbuf: Vec<u8>,
    filled: usize,
    pushes: u64,
    replies: u64,
}

impl Flooder {
    /// Takes over a joined client's connection (plain TCP only).
    pub fn new(client: Client) -> Result<Flooder, String> {
        let Client { conn, topic, join_ref, .. } = client;
        let (stream, unparsed) = conn.into_parts()?;
        Ok(Flooder::from_parts(stream, unparsed, topic, join_ref))
    }

    /// A flooder on `stream`, joined to `topic` with `join_ref`; `unparsed` are bytes
    /// already read from the stream.
    fn from_parts(stream: TcpStream, unparsed: Vec<u8>, topic: String, join_ref: String) -> Flooder {
        let mut inbuf = unparsed;
        let filled = inbuf.len();
        inbuf.resize(READ_BUF.max(filled), 0);
        Flooder {
            stream,
            topic,
            join_ref,
            // Refs after the join's; they only need to differ from each other.
            next_ref: 1_000,
            mask_state: 0x9E37_79B9_7F4A_7C15,
            batch: Vec::new(),
            written: 0,
            ends: Vec::new(),
            counted: 0,
            msg: Vec::new(),
            payload: Vec::new(),
            inbuf,
            filled,
            pushes: 0,
            replies: 0,
        }
    }

    /// Floods until `until` or until the connection ends; `pushes` follows the count of
    /// pushes written, for progress.
    pub async fn run(mut self, until: Instant, reads: bool, pushes: Rc<Cell<u64>>) -> Outcome {
        let interest = if reads { Interest::READABLE | Interest::WRITABLE } else { Interest::WRITABLE };
        let end = loop {
            let ready = tokio::select! {
                biased;
                _ = sleep_until(until) => break End::Open,
                r = self.stream.ready(interest) => r,
            };
            let ready = match ready {
                Ok(r) => r,
                Err(e) => break gone(&e),
            };
            if reads && (ready.is_readable() || ready.is_read_closed()) {
                if let Err(end) = self.read() {
                    break end;
                }
            }
            if ready.is_writable() || ready.is_write_closed() {
                if let Err(e) = self.write() {
                    break gone(&e);
                }
            }
            pushes.set(self.pushes);
            tokio::task::yield_now().await;
        };
        pushes.set(self.pushes);
        let ended_ns = end.is_disconnected().then(mono_ns);
        Outcome { pushes: self.pushes, replies: self.replies, end, ended_ns }
    }

    /// One `write` of the rest of the batch (a new batch when it is all written).
    fn write(&mut self) -> io::Result<()> {
        if self.written == self.batch.len() {
            self.refill();
        }
        match self.stream.try_write(&self.batch[self.written..]) {
            Ok(n) => {
                self.written += n;
                while self.counted < self.ends.len() && self.ends[self.counted] <= self.written {
                    self.counted += 1;
                    self.pushes += 1;
                }
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn refill(&mut self) {
        self.batch.clear();
        self.ends.clear();
        self.written = 0;
        self.counted = 0;
        for _ in 0..BATCH {
            let r = self.next_ref;
            self.next_ref += 1;
            self.payload.clear();
            write!(self.payload, "{{\"k\":{r}}}").expect("write to Vec");
            let r = r.to_string();
            self.msg.clear();
            phx::encode(&mut self.msg, Some(&self.join_ref), Some(&r), &self.topic, "echo", &self.payload);
            let mask = self.next_mask();
            ws::encode_frame(&mut self.batch, OP_TEXT, &self.msg, Some(mask));
            self.ends.push(self.batch.len());
        }
    }

    fn next_mask(&mut self) -> [u8; 4] {
        // xorshift64: client masks need only vary, not be secret, in a benchmark.
        let mut x = self.mask_state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.mask_state = x;
        (x as u32).to_ne_bytes()
    }

    /// One `read`; counts the replies among the complete frames.
    fn read(&mut self) -> Result<(), End> {
        if self.filled == self.inbuf.len() {
            let larger = self.inbuf.len() * 2;
            self.inbuf.resize(larger, 0);
        }
        match self.stream.try_read(&mut self.inbuf[self.filled..]) {
            Ok(0) => Err(End::Gone("connection closed by the server (EOF)".to_string())),
            Ok(n) => {
                self.filled += n;
                self.count_frames()
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(gone(&e)),
        }
    }

    fn count_frames(&mut self) -> Result<(), End> {
        let mut at = 0;
        let mut result = Ok(());
        while let Some(h) = ws::parse_header(&self.inbuf[at..self.filled]).map_err(|e| gone(&e))? {
            let total = h.header_len + h.payload_len;
            if self.filled - at < total {
                if total > self.inbuf.len() {
                    self.inbuf.resize(total.next_power_of_two(), 0);
                }
                break;
            }
            let payload = &self.inbuf[at + h.header_len..at + total];
            at += total;
            match h.opcode {
                OP_TEXT if phx::parse(payload).is_ok_and(|f| f.event == "phx_reply") => self.replies += 1,
                OP_CLOSE => {
                    let code = (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
                    result = Err(End::CloseFrame(code));
                    break;
                }
                _ => {}
            }
        }
        self.inbuf.copy_within(at..self.filled, 0);
        self.filled -= at;
        result
    }
}

fn gone(e: &io::Error) -> End {
    let what = match e.kind() {
        io::ErrorKind::ConnectionReset => "reset by the server",
        io::ErrorKind::BrokenPipe => "broken pipe (the server closed the connection)",
        _ => "connection failed",
    };
    End::Gone(format!("{what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A connected pair: the flooder's stream and the server's end.
    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (s, _) = l.accept().await.unwrap();
        (c, s)
    }

    fn flooder(stream: TcpStream, unparsed: Vec<u8>) -> Flooder {
        Flooder::from_parts(stream, unparsed, "room:flood".into(), "1".into())
    }

    /// Unmasks and parses every whole client frame in `b`.
    fn client_messages(mut b: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(h) = ws::parse_header(b).unwrap() {
            if b.len() < h.header_len + h.payload_len {
                break;
            }
            let mut p = b[h.header_len..h.header_len + h.payload_len].to_vec();
            ws::apply_mask(&mut p, h.mask.expect("client frames are masked"));
            out.push(String::from_utf8(p).unwrap());
            b = &b[h.header_len + h.payload_len..];
        }
        out
    }

    #[tokio::test]
    async fn never_reading_flooder_writes_whole_pushes_and_reads_nothing() {
        let (c, mut server) = pair().await;
        // A reply is waiting, but a flooder that does not read must not count it.
        let mut reply = Vec::new();
        ws::encode_frame(&mut reply, OP_TEXT, br#"["1","1000","room:flood","phx_reply",{"response":{"k":1000},"status":"ok"}]"#, None);
        server.write_all(&reply).await.unwrap();
        let f = flooder(c, Vec::new());
        let until = Instant::now() + std::time::Duration::from_millis(200);
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut b = vec![0u8; 1 << 16];
            loop {
                match server.read(&mut b).await {
                    Ok(0) | Err(_) => return got,
                    Ok(n) => got.extend_from_slice(&b[..n]),
                }
            }
        });
        let out = f.run(until, false, Rc::new(Cell::new(0))).await;
        assert_eq!(out.end, End::Open);
        assert_eq!(out.replies, 0);
        assert!(out.pushes > 0);
        let got = reader.await.unwrap();
        let msgs = client_messages(&got);
        // Everything counted as written arrived, as frames of the channel protocol.
        assert!(msgs.len() as u64 >= out.pushes, "{} frames < {} counted", msgs.len(), out.pushes);
        assert_eq!(msgs[0], r#"["1","1000","room:flood","echo",{"k":1000}]"#);
        assert_eq!(msgs[1], r#"["1","1001","room:flood","echo",{"k":1001}]"#);
    }

    #[tokio::test]
    async fn reading_flooder_counts_replies_and_sees_the_close_frame() {
        let (c, mut server) = pair().await;
        let mut frames = Vec::new();
        for r in 0..3 {
            let m = format!(r#"["1","{r}","room:flood","phx_reply",{{"response":{{}},"status":"ok"}}]"#);
            ws::encode_frame(&mut frames, OP_TEXT, m.as_bytes(), None);
        }
        ws::encode_frame(&mut frames, OP_TEXT, br#"[null,null,"room:flood","other",{}]"#, None);
        ws::encode_frame(&mut frames, OP_CLOSE, &1008u16.to_be_bytes(), None);
        // The first reply's first bytes were read during the join: they come in unparsed.
        let (head, rest) = frames.split_at(5);
        let (head, rest) = (head.to_vec(), rest.to_vec());
        let f = flooder(c, head);
        let server_task = tokio::spawn(async move {
            for chunk in rest.chunks(7) {
                server.write_all(chunk).await.unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
            // Keep the socket open (and drain it) until the flooder goes.
            let mut b = vec![0u8; 1 << 16];
            while let Ok(n) = server.read(&mut b).await {
                if n == 0 {
                    break;
                }
            }
        });
        let until = Instant::now() + std::time::Duration::from_secs(10);
        let out = f.run(until, true, Rc::new(Cell::new(0))).await;
        assert_eq!(out.end, End::CloseFrame(Some(1008)));
        assert_eq!(out.replies, 3);
        assert!(out.ended_ns.is_some());
        server_task.abort();
    }

    #[tokio::test]
    async fn a_reset_ends_the_flood() {
        let (c, server) = pair().await;
        let f = flooder(c, Vec::new());
        // Closing with unread data makes the kernel answer with a reset.
        let server_task = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            drop(server);
        });
        let until = Instant::now() + std::time::Duration::from_secs(10);
        let out = f.run(until, false, Rc::new(Cell::new(0))).await;
        server_task.await.unwrap();
        assert!(matches!(&out.end, End::Gone(_)), "{:?}", out.end);
        assert!(out.end.is_disconnected());
    }
}
