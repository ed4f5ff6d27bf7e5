//! A minimal WebSocket client (RFC 6455) for load generation: HTTP/1.1 upgrade, masked
//! client frames, unmasked server frames, one small read buffer per connection that grows
//! only when a single frame does not fit.
//!
//! `wss://` runs over rustls (the `ring` provider, as the server's), trusting the CAs
//! of a PEM file or, for a bench, any certificate. Session resumption is off: every
//! connection makes a full handshake, so that a connect benchmark measures what a new
//! client costs the server.

use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;

pub const OP_CONT: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// Initial read buffer of a connection; grown (and never past `MAX_FRAME`) only for a
/// frame larger than it.
pub const READ_BUF_INITIAL: usize = 8 * 1024;
/// Largest frame or message accepted from a server.
pub const MAX_FRAME: usize = 64 * 1024 * 1024;

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// How the server of a `wss://` URL is trusted.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub enum Trust {
    /// Certificates signed by a CA of this PEM file.
    Ca(PathBuf),
    /// Any certificate (the handshake's signatures are still checked).
    Insecure,
}

/// A parsed `ws://` or `wss://host:port/path?query` URL with `vsn=2.0.0` ensured in the query.
#[derive(Clone, Debug)]
pub struct WsUrl {
    /// The `Host` header value (`host:port`).
    pub host: String,
    /// Path and query sent in the request line.
    pub path: String,
    /// The resolved server address.
    pub addr: SocketAddr,
    /// For `wss://`: the client's TLS configuration and the name the certificate must have.
    pub tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
}

impl WsUrl {
    /// Parses `url`; a `wss://` one needs `trust`.
    pub fn parse(url: &str, trust: Option<&Trust>) -> Result<WsUrl, String> {
        let (host, path, secure) = split_url(url)?;
        let addr = host
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .next()
            .ok_or_else(|| format!("cannot resolve {host}"))?;
        let tls = match (secure, trust) {
            (false, _) => None,
            (true, None) => return Err(format!("{url}: a wss:// URL needs --ca FILE or --insecure")),
            (true, Some(trust)) => {
                let name = host.rsplit_once(':').map_or(host.as_str(), |(name, _port)| name);
                let name = name.trim_start_matches('[').trim_end_matches(']');
                let name = ServerName::try_from(name.to_owned()).map_err(|e| format!("{url}: {e}"))?;
                Some((client_config(trust)?, name))
            }
        };
        Ok(WsUrl { host, path, addr, tls })
    }
}

fn client_config(trust: &Trust) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let mut config = match trust {
        Trust::Ca(file) => {
            let mut roots = RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(file).map_err(|e| format!("--ca {}: {e}", file.display()))?;
            for cert in certs {
                let cert = cert.map_err(|e| format!("--ca {}: {e}", file.display()))?;
                roots.add(cert).map_err(|e| format!("--ca {}: {e}", file.display()))?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Trust::Insecure => builder.dangerous().with_custom_certificate_verifier(Arc::new(AnyCertificate(provider))).with_no_client_auth(),
    };
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

/// Accepts any server certificate, and checks the handshake's signatures as usual.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Splits a ws:// or wss:// URL into `host:port`, the request path and whether it is
/// wss://, adding `vsn=2.0.0` to the query when absent and refusing any other vsn.
pub fn split_url(url: &str) -> Result<(String, String, bool), String> {
    let (rest, secure) = match (url.strip_prefix("ws://"), url.strip_prefix("wss://")) {
        (Some(rest), _) => (rest, false),
        (None, Some(rest)) => (rest, true),
        (None, None) => return Err(format!("only ws:// and wss:// URLs are supported: {url}")),
    };
    let (auth, path) = match rest.find(['/', '?']) {
        Some(p) => (&rest[..p], &rest[p..]),
        None => (rest, "/"),
    };
    if auth.is_empty() {
        return Err(format!("no host in {url}"));
    }
    let host = if auth.ends_with(']') || !auth.contains(':') {
        format!("{auth}:{}", if secure { 443 } else { 80 })
    } else {
        auth.to_string()
    };
    let path = if path.starts_with('?') { format!("/{path}") } else { path.to_string() };
    let (p, q) = match path.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (path.clone(), String::new()),
    };
    let mut has_vsn = false;
    for kv in q.split('&').filter(|s| !s.is_empty()) {
        if let Some(v) = kv.strip_prefix("vsn=") {
            if v != "2.0.0" {
                return Err(format!("the load generator speaks vsn=2.0.0 only, the URL asks for vsn={v}"));
            }
            has_vsn = true;
        }
    }
    let query = match (q.is_empty(), has_vsn) {
        (_, true) => q,
        (true, false) => "vsn=2.0.0".to_string(),
        (false, false) => format!("{q}&vsn=2.0.0"),
    };
    Ok((host, format!("{p}?{query}"), secure))
}

/// The source address of client `index`: spread over 127.0.0.2..=127.0.0.254 when the
/// server is on IPv4 loopback, so 10,000+ connections do not exhaust ephemeral ports.
pub fn source_addr(server: &SocketAddr, index: usize, spread: bool) -> Option<IpAddr> {
    match server.ip() {
        IpAddr::V4(ip) if spread && ip.is_loopback() => {
            Some(IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2 + (index % 253) as u8)))
        }
        _ => None,
    }
}

/// A frame header as read from the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub fin: bool,
    pub opcode: u8,
    pub mask: Option<[u8; 4]>,
    pub header_len: usize,
    pub payload_len: usize,
}

/// Parses a frame header from the start of `b`; `Ok(None)` when more bytes are needed.
pub fn parse_header(b: &[u8]) -> io::Result<Option<FrameHeader>> {
    if b.len() < 2 {
        return Ok(None);
    }
    if b[0] & 0x70 != 0 {
        return Err(invalid("frame with RSV bits set (no extension was negotiated)"));
    }
    let fin = b[0] & 0x80 != 0;
    let opcode = b[0] & 0x0f;
    if !matches!(opcode, OP_CONT | OP_TEXT | OP_BINARY | OP_CLOSE | OP_PING | OP_PONG) {
        return Err(invalid(format!("unknown opcode {opcode:#x}")));
    }
    let masked = b[1] & 0x80 != 0;
    let (payload_len, mut pos) = match b[1] & 0x7f {
        126 => {
            if b.len() < 4 {
                return Ok(None);
            }
            (u16::from_be_bytes([b[2], b[3]]) as u64, 4)
        }
        127 => {
            if b.len() < 10 {
                return Ok(None);
            }
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[2..10]);
            (u64::from_be_bytes(a), 10)
        }
        n => (n as u64, 2),
    };
    if opcode >= OP_CLOSE && (!fin || payload_len > 125) {
        return Err(invalid("fragmented or oversized control frame"));
    }
    if payload_len > MAX_FRAME as u64 {
        return Err(invalid(format!("frame of {payload_len} bytes is over the limit")));
    }
    let mask = if masked {
        if b.len() < pos + 4 {
            return Ok(None);
        }
        let m = [b[pos], b[pos + 1], b[pos + 2], b[pos + 3]];
        pos += 4;
        Some(m)
    } else {
        None
    };
    Ok(Some(FrameHeader { fin, opcode, mask, header_len: pos, payload_len: payload_len as usize }))
}

/// Appends one final frame to `out`, masked when `mask` is given (client frames always are).
pub fn encode_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) {
    out.push(0x80 | opcode);
    let mbit = if mask.is_some() { 0x80 } else { 0 };
    let n = payload.len();
    if n < 126 {
        out.push(mbit | n as u8);
    } else if n <= u16::MAX as usize {
        out.push(mbit | 126);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(mbit | 127);
        out.extend_from_slice(&(n as u64).to_be_bytes());
    }
    match mask {
        Some(m) => {
            out.extend_from_slice(&m);
            let start = out.len();
            out.extend_from_slice(payload);
            apply_mask(&mut out[start..], m);
        }
        None => out.extend_from_slice(payload),
    }
}

/// XORs `data` with the 4-byte mask (masking and unmasking are the same operation).
pub fn apply_mask(data: &mut [u8], mask: [u8; 4]) {
    let m = u32::from_ne_bytes(mask);
    let mut chunks = data.chunks_exact_mut(4);
    for c in &mut chunks {
        let v = u32::from_ne_bytes([c[0], c[1], c[2], c[3]]) ^ m;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i];
    }
}

/// Standard base64 (with padding), enough for the 16-byte Sec-WebSocket-Key.
pub fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        s.push(T[(n >> 18) as usize & 63] as char);
        s.push(T[(n >> 12) as usize & 63] as char);
        s.push(if c.len() > 1 { T[(n >> 6) as usize & 63] as char } else { '=' });
        s.push(if c.len() > 2 { T[n as usize & 63] as char } else { '=' });
    }
    s
}

/// One complete message from the server.
#[derive(Debug, PartialEq, Eq)]
pub enum Msg<'a> {
    Text(&'a [u8]),
    Binary(&'a [u8]),
    /// The server's close frame (status code when it sent one).
    Close(Option<u16>),
}

/// A connection's byte stream: TCP, or TLS over TCP.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// A client WebSocket connection.
pub struct Conn {
    stream: Stream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    frag: Vec<u8>,
    frag_op: u8,
    out: Vec<u8>,
    rng: u64,
    /// `mono_ns` of the last read from the socket.
    read_ns: u64,
}

impl Conn {
    /// Connects from `local` (when given), and upgrades to WebSocket.
    pub async fn connect(url: &WsUrl, local: Option<IpAddr>, seed: u64) -> io::Result<Conn> {
        let sock = if url.addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
        if let Some(ip) = local {
            sock.bind(SocketAddr::new(ip, 0))?;
        }
        let tcp = sock.connect(url.addr).await?;
        tcp.set_nodelay(true)?;
        let stream = match &url.tls {
            None => Stream::Plain(tcp),
            Some((config, name)) => {
                Stream::Tls(Box::new(TlsConnector::from(Arc::clone(config)).connect(name.clone(), tcp).await?))
            }
        };
        let mut c = Conn::from_stream(stream, seed);
        c.handshake(url).await?;
        Ok(c)
    }

    fn from_stream(stream: Stream, seed: u64) -> Conn {
        Conn {
            stream,
            buf: vec![0; READ_BUF_INITIAL],
            start: 0,
            end: 0,
            frag: Vec::new(),
            frag_op: 0,
            out: Vec::new(),
            read_ns: 0,
            rng: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
        }
    }

    fn next_rand(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    async fn handshake(&mut self, url: &WsUrl) -> io::Result<()> {
        let mut key = [0u8; 16];
        key[..8].copy_from_slice(&self.next_rand().to_le_bytes());
        key[8..].copy_from_slice(&self.next_rand().to_le_bytes());
        let req = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n\r\n",
            url.path,
            url.host,
            base64(&key)
        );
        self.write(req.as_bytes()).await?;
        loop {
            if let Some(p) = find(&self.buf[..self.end], b"\r\n\r\n") {
                let head = &self.buf[..p];
                let status = head.split(|&c| c == b'\r').next().unwrap_or(b"");
                if !status.starts_with(b"HTTP/1.1 101") {
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionRefused,
                        format!("upgrade refused: {}", String::from_utf8_lossy(status)),
                    ));
                }
                self.start = p + 4;
                return Ok(());
            }
            if self.end == self.buf.len() {
                return Err(invalid("upgrade response headers too large"));
            }
            let n = self.stream.read(&mut self.buf[self.end..]).await?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed during upgrade"));
            }
            self.end += n;
        }
    }

    /// Sends one masked frame.
    pub async fn send_frame(&mut self, opcode: u8, payload: &[u8]) -> io::Result<()> {
        let mask = (self.next_rand() as u32).to_ne_bytes();
        self.out.clear();
        encode_frame(&mut self.out, opcode, payload, Some(mask));
        let out = std::mem::take(&mut self.out);
        let written = self.write(&out).await;
        self.out = out;
        written
    }

    /// Writes `bytes` and flushes them: over TLS, what the socket did not take at once
    /// waits in rustls until a flush (on TCP a flush does nothing).
    async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }

    /// Reads the next complete message. Pings are answered and pongs skipped. Cancel
    /// safe unless a ping is being answered: buffered bytes are never lost.
    pub async fn next_msg(&mut self) -> io::Result<Msg<'_>> {
        self.next_msg_timed().await.map(|(_, m)| m)
    }

    /// `next_msg`, with the `mono_ns` time of the socket read that completed the message
    /// (one clock read per read syscall rather than per message).
    pub async fn next_msg_timed(&mut self) -> io::Result<(u64, Msg<'_>)> {
        loop {
            if let Some(h) = parse_header(&self.buf[self.start..self.end])? {
                if h.mask.is_some() {
                    return Err(invalid("the server sent a masked frame"));
                }
                let total = h.header_len + h.payload_len;
                if self.end - self.start >= total {
                    let (ps, pe) = (self.start + h.header_len, self.start + total);
                    self.start += total;
                    if self.start == self.end {
                        self.start = 0;
                        self.end = 0;
                        // The frame's bytes stay in place until the next read, which
                        // cannot happen while the returned slice is borrowed.
                    }
                    match h.opcode {
                        OP_TEXT | OP_BINARY if h.fin && self.frag_op == 0 => {
                            let p = &self.buf[ps..pe];
                            return Ok((self.read_ns, if h.opcode == OP_TEXT { Msg::Text(p) } else { Msg::Binary(p) }));
                        }
                        OP_TEXT | OP_BINARY => {
                            if self.frag_op != 0 {
                                return Err(invalid("new data frame inside a fragmented message"));
                            }
                            self.frag_op = h.opcode;
                            self.frag.clear();
                            self.frag.extend_from_slice(&self.buf[ps..pe]);
                        }
                        OP_CONT => {
                            if self.frag_op == 0 {
                                return Err(invalid("continuation frame with no message to continue"));
                            }
                            if self.frag.len() + (pe - ps) > MAX_FRAME {
                                return Err(invalid("fragmented message over the limit"));
                            }
                            self.frag.extend_from_slice(&self.buf[ps..pe]);
                            if h.fin {
                                let op = std::mem::replace(&mut self.frag_op, 0);
                                let p = &self.frag[..];
                                return Ok((self.read_ns, if op == OP_TEXT { Msg::Text(p) } else { Msg::Binary(p) }));
                            }
                        }
                        OP_PING => {
                            let payload = self.buf[ps..pe].to_vec();
                            self.send_frame(OP_PONG, &payload).await?;
                        }
                        OP_PONG => {}
                        OP_CLOSE => {
                            let code = (pe - ps >= 2).then(|| u16::from_be_bytes([self.buf[ps], self.buf[ps + 1]]));
                            return Ok((self.read_ns, Msg::Close(code)));
                        }
                        _ => unreachable!("parse_header checks opcodes"),
                    }
                    continue;
                }
                if total > self.buf.len() {
                    // One frame larger than the buffer: grow it (the only time it grows).
                    self.compact();
                    self.buf.resize(total.next_power_of_two(), 0);
                }
            }
            if self.end == self.buf.len() {
                self.compact();
            }
            let n = self.stream.read(&mut self.buf[self.end..]).await?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed by the server"));
            }
            self.read_ns = crate::sys::mono_ns();
            self.end += n;
        }
    }

    /// Gives back the memory of a read buffer grown for one large message (a presence
    /// state of thousands of entries), keeping whatever is buffered and not yet parsed.
    /// Call it once that message's slice is no longer borrowed.
    pub fn shrink_read_buf(&mut self) {
        if self.buf.len() > READ_BUF_INITIAL {
            self.compact();
            self.buf.truncate(self.end.max(READ_BUF_INITIAL));
            self.buf.shrink_to_fit();
        }
        if self.frag_op == 0 {
            self.frag = Vec::new();
        }
    }

    fn compact(&mut self) {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
    }

    /// Leaves the framing to the caller: the TCP stream and the bytes already read from
    /// it but not yet parsed. The flooder needs this: it must write without ever waiting
    /// for a read, which `send_frame` + `next_msg` on one `&mut self` cannot do. Plain
    /// TCP only: the flooder's readiness loop has no TLS.
    pub fn into_parts(self) -> Result<(TcpStream, Vec<u8>), String> {
        let unparsed = self.buf[self.start..self.end].to_vec();
        match self.stream {
            Stream::Plain(tcp) => Ok((tcp, unparsed)),
            Stream::Tls(_) => Err("the flood scenario runs over ws:// only".to_owned()),
        }
    }

    /// Current size of the read buffer.
    #[cfg(test)]
    pub fn read_buf_len(&self) -> usize {
        self.buf.len()
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn url_gets_vsn() {
        assert_eq!(
            split_url("ws://127.0.0.1:4001/socket/websocket").unwrap(),
            ("127.0.0.1:4001".into(), "/socket/websocket?vsn=2.0.0".into(), false)
        );
        assert_eq!(
            split_url("ws://localhost/socket/websocket?user_id=a").unwrap(),
            ("localhost:80".into(), "/socket/websocket?user_id=a&vsn=2.0.0".into(), false)
        );
        assert_eq!(
            split_url("ws://h:1/s?vsn=2.0.0&x=1").unwrap(),
            ("h:1".into(), "/s?vsn=2.0.0&x=1".into(), false)
        );
        assert_eq!(split_url("ws://h:1").unwrap(), ("h:1".into(), "/?vsn=2.0.0".into(), false));
        assert!(split_url("ws://h:1/s?vsn=1.0.0").is_err());
        assert_eq!(split_url("wss://h:1/s").unwrap(), ("h:1".into(), "/s?vsn=2.0.0".into(), true));
        assert_eq!(split_url("wss://localhost/s").unwrap().0, "localhost:443");
        assert!(split_url("http://h:1/s").is_err());
    }

    #[test]
    fn wss_needs_a_trust_and_names_the_host() {
        assert!(WsUrl::parse("wss://127.0.0.1:4002/s", None).unwrap_err().contains("--ca FILE or --insecure"));
        let url = WsUrl::parse("wss://localhost:4002/s", Some(&Trust::Insecure)).unwrap();
        let (_config, name) = url.tls.expect("a TLS config");
        assert_eq!(name.to_str(), "localhost");
        assert!(WsUrl::parse("ws://127.0.0.1:4002/s", None).unwrap().tls.is_none());
    }

    #[test]
    fn source_addresses_spread_over_loopback() {
        let lo: SocketAddr = "127.0.0.1:4001".parse().unwrap();
        assert_eq!(source_addr(&lo, 0, true), Some("127.0.0.2".parse().unwrap()));
        assert_eq!(source_addr(&lo, 252, true), Some("127.0.0.254".parse().unwrap()));
        assert_eq!(source_addr(&lo, 253, true), Some("127.0.0.2".parse().unwrap()));
        assert_eq!(source_addr(&lo, 5, false), None);
        let other: SocketAddr = "[::1]:4001".parse().unwrap();
        assert_eq!(source_addr(&other, 5, true), None);
    }

    #[test]
    fn base64_key() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        // RFC 6455's sample nonce
        assert_eq!(base64(b"the sample nonce"), "dGhlIHNhbXBsZSBub25jZQ==");
    }

    #[test]
    fn encodes_masked_client_frames() {
        // RFC 6455 5.7: a masked "Hello"
        let mut out = Vec::new();
        encode_frame(&mut out, OP_TEXT, b"Hello", Some([0x37, 0xfa, 0x21, 0x3d]));
        assert_eq!(out, [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]);
        let h = parse_header(&out).unwrap().unwrap();
        assert_eq!(
            h,
            FrameHeader { fin: true, opcode: OP_TEXT, mask: Some([0x37, 0xfa, 0x21, 0x3d]), header_len: 6, payload_len: 5 }
        );
        let mut p = out[6..].to_vec();
        apply_mask(&mut p, h.mask.unwrap());
        assert_eq!(p, b"Hello");
    }

    #[test]
    fn encodes_unmasked_and_extended_lengths() {
        let mut out = Vec::new();
        encode_frame(&mut out, OP_TEXT, b"Hello", None);
        assert_eq!(out, [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        for (n, hl) in [(125usize, 2usize), (126, 4), (65535, 4), (65536, 10), (200_000, 10)] {
            let payload: Vec<u8> = (0..n).map(|i| i as u8).collect();
            for mask in [None, Some([1, 2, 3, 4])] {
                let mut out = Vec::new();
                encode_frame(&mut out, OP_BINARY, &payload, mask);
                let h = parse_header(&out).unwrap().unwrap();
                let mhl = hl + if mask.is_some() { 4 } else { 0 };
                assert_eq!((h.header_len, h.payload_len, h.opcode, h.fin), (mhl, n, OP_BINARY, true));
                let mut p = out[mhl..].to_vec();
                if let Some(m) = h.mask {
                    apply_mask(&mut p, m);
                }
                assert_eq!(p, payload);
                // every strict prefix of the header asks for more bytes
                for cut in 0..mhl {
                    assert_eq!(parse_header(&out[..cut]).unwrap(), None, "n={n} cut={cut}");
                }
            }
        }
    }

    #[test]
    fn mask_of_odd_lengths() {
        for n in 0..11 {
            let data: Vec<u8> = (0..n as u8).collect();
            let mut d = data.clone();
            apply_mask(&mut d, [9, 8, 7, 6]);
            let expect: Vec<u8> = data.iter().enumerate().map(|(i, b)| b ^ [9, 8, 7, 6][i % 4]).collect();
            assert_eq!(d, expect);
        }
    }

    #[test]
    fn rejects_bad_headers() {
        assert!(parse_header(&[0xC1, 0x00]).is_err()); // RSV1
        assert!(parse_header(&[0x83, 0x00]).is_err()); // opcode 3
        assert!(parse_header(&[0x09, 0x00]).is_err()); // fragmented ping
        assert!(parse_header(&[0x89, 126, 0, 200]).is_err()); // long ping
        let mut huge = vec![0x82, 127];
        huge.extend_from_slice(&(u64::MAX / 2).to_be_bytes());
        assert!(parse_header(&huge).is_err());
    }

    /// A fake server: answers the upgrade with 101 and then writes `frames` in chunks of
    /// `chunk` bytes; returns what the client wrote after its request.
    async fn fake_server(frames: Vec<u8>, chunk: usize) -> (WsUrl, tokio::task::JoinHandle<Vec<u8>>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let h = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut req = Vec::new();
            let mut b = [0u8; 1024];
            while find(&req, b"\r\n\r\n").is_none() {
                let n = s.read(&mut b).await.unwrap();
                req.extend_from_slice(&b[..n]);
            }
            let text = String::from_utf8(req.clone()).unwrap();
            assert!(text.starts_with("GET /socket/websocket?vsn=2.0.0 HTTP/1.1\r\n"), "{text}");
            assert!(text.contains("Sec-WebSocket-Key: "));
            let mut resp = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n".to_vec();
            resp.extend_from_slice(&frames);
            for c in resp.chunks(chunk) {
                s.write_all(c).await.unwrap();
                s.flush().await.unwrap();
                tokio::task::yield_now().await;
            }
            let mut rest = req[find(&req, b"\r\n\r\n").unwrap() + 4..].to_vec();
            loop {
                let n = s.read(&mut b).await.unwrap();
                if n == 0 {
                    break;
                }
                rest.extend_from_slice(&b[..n]);
            }
            rest
        });
        let url = WsUrl::parse(&format!("ws://{addr}/socket/websocket"), None).unwrap();
        (url, h)
    }

    #[tokio::test]
    async fn reads_frames_across_reads_and_answers_pings() {
        let big: Vec<u8> = (0..20_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let mut frames = Vec::new();
        encode_frame(&mut frames, OP_TEXT, b"[null,null,\"room:a\",\"x\",{}]", None);
        encode_frame(&mut frames, OP_PING, b"pp", None);
        // a fragmented text message: "he" + "ll" + "o"
        frames.extend_from_slice(&[0x01, 2, b'h', b'e', 0x00, 2, b'l', b'l', 0x80, 1, b'o']);
        encode_frame(&mut frames, OP_BINARY, &big, None); // larger than the read buffer
        encode_frame(&mut frames, OP_TEXT, b"after", None);
        encode_frame(&mut frames, OP_CLOSE, &1000u16.to_be_bytes(), None);
        for chunk in [1usize, 7, 4096, 1 << 20] {
            let (url, server) = fake_server(frames.clone(), chunk).await;
            let mut c = Conn::connect(&url, None, 42).await.unwrap();
            assert_eq!(c.next_msg().await.unwrap(), Msg::Text(b"[null,null,\"room:a\",\"x\",{}]"));
            assert_eq!(c.next_msg().await.unwrap(), Msg::Text(b"hello"));
            assert_eq!(c.next_msg().await.unwrap(), Msg::Binary(&big[..]));
            assert!(c.read_buf_len() >= 20_000);
            assert_eq!(c.next_msg().await.unwrap(), Msg::Text(b"after"));
            assert_eq!(c.next_msg().await.unwrap(), Msg::Close(Some(1000)));
            c.send_frame(OP_TEXT, b"bye").await.unwrap();
            drop(c);
            let written = server.await.unwrap();
            // the pong (masked, echoing "pp") then the text frame
            let h = parse_header(&written).unwrap().unwrap();
            assert_eq!((h.opcode, h.payload_len, h.mask.is_some()), (OP_PONG, 2, true));
            let mut p = written[h.header_len..h.header_len + 2].to_vec();
            apply_mask(&mut p, h.mask.unwrap());
            assert_eq!(p, b"pp");
            let rest = &written[h.header_len + 2..];
            let h2 = parse_header(rest).unwrap().unwrap();
            let mut p = rest[h2.header_len..].to_vec();
            apply_mask(&mut p, h2.mask.unwrap());
            assert_eq!((h2.opcode, &p[..]), (OP_TEXT, &b"bye"[..]));
        }
    }

    #[tokio::test]
    async fn refused_upgrade_is_an_error() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut b = [0u8; 1024];
            let _ = s.read(&mut b).await.unwrap();
            s.write_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n").await.unwrap();
        });
        let url = WsUrl::parse(&format!("ws://{addr}/socket/websocket"), None).unwrap();
        let err = Conn::connect(&url, None, 1).await.err().unwrap();
        assert!(err.to_string().contains("403"), "{err}");
    }
}
