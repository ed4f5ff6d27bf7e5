//! The HTTPS listener: a real `Server` with a certificate the test makes (`rcgen`), and
//! real clients: tokio-tungstenite over rustls for `wss://`, raw TCP for handshakes that
//! stall or are not TLS at all.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{eventually, Client, Pacer, TestServer, Ws, FRAME_TIMEOUT};
use fenix_core::protocol::{Body, Serializer};
use fenix_core::server::{CipherSuite, Config, HttpsConfig, TlsError};
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore, SupportedProtocolVersion};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::Connector;

/// A self-signed certificate for `localhost` and its key, in PEM files of a directory
/// of their own, removed with it.
struct TestCert {
    dir: PathBuf,
    der: CertificateDer<'static>,
}

impl TestCert {
    fn new() -> TestCert {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!("fenix-tls-test-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let dir = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        std::fs::write(dir.join("cert.pem"), generated.cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), generated.key_pair.serialize_pem()).unwrap();
        TestCert { dir, der: generated.cert.der().clone() }
    }

    fn certfile(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }

    fn keyfile(&self) -> PathBuf {
        self.dir.join("key.pem")
    }

    fn server_config(&self, cipher_suite: CipherSuite) -> Arc<rustls::ServerConfig> {
        HttpsConfig::server_config(&self.certfile(), &self.keyfile(), cipher_suite).expect("a usable certificate")
    }

    /// A client that trusts this certificate alone, speaking `versions`.
    fn client(&self, versions: &[&'static SupportedProtocolVersion]) -> ClientConfig {
        let mut roots = RootCertStore::empty();
        roots.add(self.der.clone()).unwrap();
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth()
    }
}

impl Drop for TestCert {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A server with both listeners, HTTPS with `cert`, its options adjusted by `configure`.
fn https_server(cert: &TestCert, cipher_suite: CipherSuite, configure: impl FnOnce(&mut Config)) -> TestServer {
    TestServer::with_config(|config| {
        let addr = SocketAddr::from(([127, 0, 0, 1], 0));
        config.https = Some(HttpsConfig { addr, tls: cert.server_config(cipher_suite) });
        configure(config);
    })
}

fn https_addr(t: &TestServer) -> SocketAddr {
    t.server.https_addr().expect("an HTTPS listener")
}

/// A `wss://` upgrade of `/socket/websocket?<query>` with the client `tls`.
async fn try_connect_wss(t: &TestServer, tls: ClientConfig, query: &str) -> Result<Ws, tungstenite::Error> {
    let addr = https_addr(t);
    let request = format!("wss://localhost:{}/socket/websocket?{query}", addr.port()).into_client_request()?;
    // A small receive buffer: what the server sends meets a full socket soon.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(addr).await.unwrap();
    let connector = Some(Connector::Rustls(Arc::new(tls)));
    let connecting = tokio_tungstenite::client_async_tls_with_config(request, tcp, None, connector);
    let (ws, _response) = tokio::time::timeout(FRAME_TIMEOUT, connecting).await.expect("no hang")?;
    Ok(ws)
}

async fn connect_wss(t: &TestServer, cert: &TestCert, params: &str) -> Client {
    let tls = cert.client(rustls::DEFAULT_VERSIONS);
    let ws = try_connect_wss(t, tls, &format!("vsn=2.0.0&{params}")).await.expect("upgrade accepted");
    Client::new(ws, Serializer::V2, params)
}

/// Reads until the server closes the connection; true if it did within the guard timeout.
async fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut sink = Vec::new();
    // An alert may come first; what matters is the end of the stream.
    tokio::time::timeout(FRAME_TIMEOUT, stream.read_to_end(&mut sink)).await.is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_clients_join_echo_and_share_topics_with_plain_clients() {
    let cert = TestCert::new();
    let t = https_server(&cert, CipherSuite::Default, |_| {});
    let mut secure = connect_wss(&t, &cert, "user_id=s").await;
    let mut plain = t.connect(Serializer::V2, "user_id=p").await;
    secure.join("1", "room:lobby").await;
    plain.join("1", "room:lobby").await;

    secure.send(r#"["1","2","room:lobby","echo",{"over":"tls"}]"#).await;
    secure.expect(r#"["1","2","room:lobby","phx_reply",{"response":{"over":"tls"},"status":"ok"}]"#).await;
    // Both listeners serve the same sockets: a broadcast from one side reaches the other.
    plain.send(r#"["1","3","room:lobby","shout",{"msg":"hi"}]"#).await;
    secure.expect(r#"[null,null,"room:lobby","shout",{"msg":"hi"}]"#).await;
    plain.expect(r#"[null,null,"room:lobby","shout",{"msg":"hi"}]"#).await;
    secure.heartbeat("4").await;
    let secure_by_user: Vec<(Option<String>, bool)> =
        t.app.connects().iter().map(|c| (common::query_param(&c.uri, "user_id"), c.secure)).collect();
    assert_eq!(secure_by_user, [(Some("s".to_owned()), true), (Some("p".to_owned()), false)], "the application is told which came over TLS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wss_session_moves_from_the_intake_runtime_with_its_tls_state() {
    let cert = TestCert::new();
    let t = TestServer::with_intake(|config| {
        config.https = Some(HttpsConfig { addr: SocketAddr::from(([127, 0, 0, 1], 0)), tls: cert.server_config(CipherSuite::Default) });
        config.young_for = Duration::from_millis(200);
    });
    let mut client = connect_wss(&t, &cert, "user_id=s").await;
    client.join("1", "room:lobby").await;
    client.send(r#"["1","2","room:lobby","echo",{"n":1}]"#).await;
    client.expect(r#"["1","2","room:lobby","phx_reply",{"response":{"n":1},"status":"ok"}]"#).await;
    eventually("the session moved", || t.server.sessions_promoted() == 1).await;
    // Larger than a TLS record both ways, on the main runtime now.
    let big = "x".repeat(64 * 1024);
    client.send(&format!(r#"["1","3","room:lobby","echo",{{"big":"{big}"}}]"#)).await;
    client.expect(&format!(r#"["1","3","room:lobby","phx_reply",{{"response":{{"big":"{big}"}},"status":"ok"}}]"#)).await;
    Pacer::new().broadcast(&t.server, "room:lobby", "shout", Body::Json(br#"{"n":2}"#), None).await;
    client.expect(r#"[null,null,"room:lobby","shout",{"n":2}]"#).await;
    client.heartbeat("4").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_larger_than_a_tls_record_cross_both_ways() {
    let cert = TestCert::new();
    let t = https_server(&cert, CipherSuite::Default, |_| {});
    let mut client = connect_wss(&t, &cert, "user_id=big").await;
    client.join("1", "room:big").await;
    // 256 KiB: sixteen records at least, each way.
    let blob = "x".repeat(256 * 1024);
    client.send(&format!(r#"["1","2","room:big","echo",{{"blob":"{blob}"}}]"#)).await;
    client.expect(&format!(r#"["1","2","room:big","phx_reply",{{"response":{{"blob":"{blob}"}},"status":"ok"}}]"#)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_bigger_than_the_socket_buffers_arrives_whole_and_in_order() {
    let cert = TestCert::new();
    let t = https_server(&cert, CipherSuite::Default, |config| {
        config.sockets[0].outbox_capacity_bytes = 16 << 20;
        config.sockets[0].outbox_capacity = 1 << 16;
    });
    let mut client = connect_wss(&t, &cert, "user_id=backlog").await;
    client.join("1", "room:backlog").await;
    // 8 MiB queued before the client reads a byte: the writer meets a full socket (and
    // a full rustls buffer) many times, the last batch too (the client reads slower
    // than the server writes), and must send what rustls holds once the socket drains,
    // with nothing written after it.
    let pad = "p".repeat(1000);
    let pacer = Pacer::new();
    const COUNT: usize = 8 * 1024;
    for n in 0..COUNT {
        let body = format!(r#"{{"n":{n},"pad":"{pad}"}}"#);
        pacer.broadcast(&t.server, "room:backlog", "b", Body::Json(body.as_bytes()), None).await;
    }
    // The writer fills the socket meanwhile, and waits for it to drain.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for n in 0..COUNT {
        client.expect(&format!(r#"[null,null,"room:backlog","b",{{"n":{n},"pad":"{pad}"}}]"#)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_handshake_is_closed_at_the_head_timeout() {
    let cert = TestCert::new();
    let t = https_server(&cert, CipherSuite::Default, |config| config.head_timeout = Duration::from_millis(200));
    // Silent from the start.
    let mut silent = TcpStream::connect(https_addr(&t)).await.unwrap();
    // The start of a TLS record header (a handshake, TLS 1.0 framing), then nothing.
    let mut halfway = TcpStream::connect(https_addr(&t)).await.unwrap();
    halfway.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).await.unwrap();
    assert!(closed_by_server(&mut silent).await, "a silent connection is closed");
    assert!(closed_by_server(&mut halfway).await, "a half-sent ClientHello is closed");
    // The listener is not held up by them.
    connect_wss(&t, &cert, "user_id=after").await.heartbeat("1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_instead_of_a_client_hello_is_closed() {
    let cert = TestCert::new();
    let t = https_server(&cert, CipherSuite::Default, |_| {});
    let mut stream = TcpStream::connect(https_addr(&t)).await.unwrap();
    stream.write_all(b"GET /socket/websocket HTTP/1.1\r\nhost: localhost\r\n\r\n").await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(FRAME_TIMEOUT, stream.read_to_end(&mut response)).await.expect("closed").ok();
    assert!(!response.starts_with(b"HTTP/"), "no plain HTTP on the HTTPS port");
    connect_wss(&t, &cert, "user_id=after").await.heartbeat("1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_connections_count_toward_the_connection_limits() {
    let cert = TestCert::new();
    let t = https_server(&cert, CipherSuite::Default, |config| config.max_connections_per_address = 1);
    let mut first = connect_wss(&t, &cert, "user_id=a").await;
    let refused = try_connect_wss(&t, cert.client(rustls::DEFAULT_VERSIONS), "vsn=2.0.0").await;
    assert!(
        matches!(&refused, Err(tungstenite::Error::Http(response)) if response.status() == 503),
        "a second wss:// connection from the address: {refused:?}"
    );
    let plain = t.try_connect("vsn=2.0.0", None).await;
    assert!(matches!(&plain, Err(tungstenite::Error::Http(response)) if response.status() == 503), "{plain:?}");
    first.heartbeat("1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strong_is_tls13_only_and_compatible_takes_tls12_too() {
    let cert = TestCert::new();
    let tls12 = [&rustls::version::TLS12];
    let strong = https_server(&cert, CipherSuite::Strong, |_| {});
    assert!(try_connect_wss(&strong, cert.client(&tls12), "vsn=2.0.0").await.is_err(), "strong refuses TLS 1.2");
    connect_wss(&strong, &cert, "user_id=13").await.heartbeat("1").await;

    let compatible = https_server(&cert, CipherSuite::Compatible, |_| {});
    let ws = try_connect_wss(&compatible, cert.client(&tls12), "vsn=2.0.0").await.expect("compatible takes TLS 1.2");
    Client::new(ws, Serializer::V2, "").heartbeat("1").await;
    assert_eq!(CipherSuite::from_name("strong"), Some(CipherSuite::Strong));
    assert_eq!(CipherSuite::from_name("compatible"), Some(CipherSuite::Compatible));
    assert_eq!(CipherSuite::from_name("weak"), None);
}

#[test]
fn unusable_certificate_or_key_files_are_clear_errors() {
    let cert = TestCert::new();
    let other = TestCert::new();
    let missing = cert.dir.join("missing.pem");
    let error = |certfile: &Path, keyfile: &Path| {
        HttpsConfig::server_config(certfile, keyfile, CipherSuite::Default).expect_err("refused")
    };

    let no_file = error(&missing, &cert.keyfile());
    assert!(matches!(&no_file, TlsError::File { what: "certfile", path, .. } if *path == missing), "{no_file}");
    assert!(no_file.to_string().contains("missing.pem"), "{no_file}");
    let no_key_file = error(&cert.certfile(), &missing);
    assert!(matches!(no_key_file, TlsError::File { what: "keyfile", .. }), "{no_key_file}");
    // A key where the certificate should be, and the other way round.
    let swapped = error(&cert.keyfile(), &cert.certfile());
    assert!(matches!(swapped, TlsError::File { what: "certfile", .. }), "{swapped}");
    let not_a_key = error(&cert.certfile(), &cert.certfile());
    assert!(matches!(not_a_key, TlsError::File { what: "keyfile", .. }), "{not_a_key}");
    let mismatched = error(&cert.certfile(), &other.keyfile());
    assert!(matches!(mismatched, TlsError::Invalid(_)), "{mismatched}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_alone_serves_the_sockets_and_stop_closes_with_1012() {
    let cert = TestCert::new();
    let t = https_server(&cert, CipherSuite::Default, |config| config.addr = None);
    assert_eq!(t.server.local_addr(), https_addr(&t), "the only listener");
    let mut client = connect_wss(&t, &cert, "user_id=only").await;
    client.join("1", "room:only").await;
    t.server.stop();
    client.expect_close(1012).await;
    assert_eq!(client.drain().await.0, 0, "nothing after the close, and the connection ends");
}
