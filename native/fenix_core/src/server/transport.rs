//! The byte streams a connection runs on: plain TCP, or TLS over TCP.
//!
//! A connection has two phases. Until its upgrade is answered it is a [`Stream`]
//! (`AsyncRead + AsyncWrite`: `http.rs` reads the request head and writes the
//! response with tokio's helpers). Once upgraded, its session runs on the stream's
//! [`Transport`]: readiness (`readable`, `writable`) and non-blocking `try_*` calls,
//! which let the session read into a per-thread buffer and write vectored batches
//! (see `session.rs`).
//!
//! Both traits are implemented by `TcpStream` itself, so the plain path is what it was
//! before TLS existed: the session is generic over its transport and the TCP
//! instance is the same code. TLS connections use [`TlsSession`]: the rustls
//! connection that the handshake (tokio-rustls, see `tls.rs`) produced, driven here
//! over the TCP socket's readiness. It keeps the session's guarantees: plaintext is
//! decrypted into the caller's buffer (nothing per connection but what rustls holds),
//! and what is written waits in rustls's outgoing buffer, bounded by its limit
//! (64 KiB by default), so a client that does not read still fills its outbox and is
//! dropped as on plain TCP.

use std::future::Future;
use std::io::{self, IoSlice, Read, Write};
use std::sync::{Mutex, MutexGuard};

use rustls::ServerConnection;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::runtime::Handle;

/// A connection before its upgrade: what `http.rs` reads the request head from.
pub(super) trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Whether it is encrypted (for the request's scheme).
    const SECURE: bool;
    /// What the session runs on once the connection is upgraded.
    type Session: Transport;

    /// The transport for the session, with everything read or written so far kept.
    fn into_session(self) -> Self::Session;
}

/// A connection's byte stream as the session uses it: readiness and non-blocking calls
/// with the contract of tokio's `TcpStream` (`try_*` gives `WouldBlock` when it would wait).
pub(super) trait Transport: Send + Sync + 'static {
    /// Resolves when `try_read` may give bytes (or the end of the stream).
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send;
    /// Reads what is available into `buf`; `Ok(0)` at the end of the stream.
    fn try_read(&self, buf: &mut [u8]) -> io::Result<usize>;
    /// Resolves when `try_write` may take bytes.
    fn writable(&self) -> impl Future<Output = io::Result<()>> + Send;
    /// Writes (or for TLS, encrypts and queues) what it can of `buf`.
    fn try_write(&self, buf: &[u8]) -> io::Result<usize>;
    /// Same as `try_write`, for several buffers.
    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;
    /// Sends what `try_write` took and the socket did not yet; true when nothing is left.
    fn try_flush(&self) -> io::Result<bool>;
    /// Ends the stream (after a TLS close_notify), best effort.
    fn shutdown(&mut self) -> impl Future<Output = ()> + Send;
    /// The same stream, its socket registered with `runtime`'s reactor instead (what
    /// was read or written so far, and TLS state, kept).
    fn move_to(self, runtime: &Handle) -> io::Result<Self>
    where
        Self: Sized;
}

impl Stream for TcpStream {
    const SECURE: bool = false;
    type Session = TcpStream;

    fn into_session(self) -> TcpStream {
        self
    }
}

impl Transport for TcpStream {
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send {
        TcpStream::readable(self)
    }

    fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        TcpStream::try_read(self, buf)
    }

    fn writable(&self) -> impl Future<Output = io::Result<()>> + Send {
        TcpStream::writable(self)
    }

    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        TcpStream::try_write(self, buf)
    }

    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        TcpStream::try_write_vectored(self, bufs)
    }

    fn try_flush(&self) -> io::Result<bool> {
        // What try_write took is in the kernel already.
        Ok(true)
    }

    async fn shutdown(&mut self) {
        let _ = AsyncWriteExt::shutdown(self).await;
    }

    fn move_to(self, runtime: &Handle) -> io::Result<TcpStream> {
        // Deregistered here (the socket stays open, non-blocking), registered there.
        let socket = self.into_std()?;
        let _guard = runtime.enter();
        TcpStream::from_std(socket)
    }
}

impl Stream for tokio_rustls::server::TlsStream<TcpStream> {
    const SECURE: bool = true;
    type Session = TlsSession;

    fn into_session(self) -> TlsSession {
        // The rustls connection keeps whatever it has read but not handed out yet
        // (frames that came with the request head) and whatever is still to be sent.
        let (tcp, tls) = self.into_inner();
        TlsSession { tcp, tls: Mutex::new(tls) }
    }
}

/// An upgraded TLS connection: rustls over the TCP socket's readiness.
///
/// The session's reader and writer run in one task and lock the rustls state only
/// inside non-blocking calls, never across an await: the lock is never contended.
#[derive(Debug)]
pub(super) struct TlsSession {
    tcp: TcpStream,
    tls: Mutex<ServerConnection>,
}

impl TlsSession {
    fn lock(&self) -> MutexGuard<'_, ServerConnection> {
        // A panic mid-call leaves at worst a broken TLS stream, which the next call reports.
        self.tls.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Writes what rustls has to send until the socket would block; true when all of it went.
    fn send_tls(&self, tls: &mut ServerConnection) -> io::Result<bool> {
        while tls.wants_write() {
            match tls.write_tls(&mut TcpIo(&self.tcp)) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Whether rustls holds input for `try_read` (plaintext, or the end of the stream).
    fn has_input(&self) -> io::Result<bool> {
        let mut tls = self.lock();
        // Records read earlier but not processed yet (the plaintext buffer was full).
        tls.process_new_packets().map_err(invalid_data)?;
        let buffered = match std::io::BufRead::fill_buf(&mut tls.reader()) {
            Ok(_) => true,
            Err(e) => e.kind() != io::ErrorKind::WouldBlock,
        };
        Ok(buffered)
    }

    /// Queues `write`'s plaintext in rustls and sends what the socket takes now.
    fn try_queue(&self, write: impl FnOnce(&mut rustls::Writer<'_>) -> io::Result<usize>) -> io::Result<usize> {
        let mut tls = self.lock();
        self.send_tls(&mut tls)?;
        let taken = write(&mut tls.writer())?;
        // What the socket does not take now is sent by the next write or flush.
        self.send_tls(&mut tls)?;
        if taken == 0 {
            // rustls's buffer is full: the socket must drain it first.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(taken)
    }
}

impl Transport for TlsSession {
    async fn readable(&self) -> io::Result<()> {
        if self.has_input()? {
            return Ok(());
        }
        self.tcp.readable().await
    }

    fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut tls = self.lock();
        loop {
            match tls.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            if tls.read_tls(&mut TcpIo(&self.tcp))? == 0 {
                return Ok(0);
            }
            let processed = tls.process_new_packets();
            // Handshake messages, alerts and key updates rustls answers with: sent now
            // if the socket takes them, else with the next write.
            self.send_tls(&mut tls)?;
            processed.map_err(invalid_data)?;
        }
    }

    fn writable(&self) -> impl Future<Output = io::Result<()>> + Send {
        // try_write first sends what rustls holds: it takes more once the socket does.
        self.tcp.writable()
    }

    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        self.try_queue(|writer| writer.write(buf))
    }

    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.try_queue(|writer| writer.write_vectored(bufs))
    }

    fn try_flush(&self) -> io::Result<bool> {
        self.send_tls(&mut self.lock())
    }

    async fn shutdown(&mut self) {
        self.lock().send_close_notify();
        // Best effort: a peer that does not read gets no close_notify.
        let flush = async {
            while !self.try_flush()? {
                self.tcp.writable().await?;
            }
            io::Result::Ok(())
        };
        let _ = tokio::time::timeout(CLOSE_NOTIFY_TIMEOUT, flush).await;
        let _ = AsyncWriteExt::shutdown(&mut self.tcp).await;
    }

    fn move_to(self, runtime: &Handle) -> io::Result<TlsSession> {
        Ok(TlsSession { tcp: self.tcp.move_to(runtime)?, tls: self.tls })
    }
}

/// How long a closing TLS connection may take to send its close_notify.
const CLOSE_NOTIFY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

fn invalid_data(error: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error)
}

/// The TCP socket as `std::io` for rustls: non-blocking calls on a shared reference.
struct TcpIo<'a>(&'a TcpStream);

impl Read for TcpIo<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

impl Write for TcpIo<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
