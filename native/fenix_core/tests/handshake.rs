//! RFC 6455 edge cases over raw TCP against a real `Server` (the test application of
//! `common`): the opening handshake (RFC6455§4.2.1, §4.2.2, §4.4) and the answer to a
//! client's close frame (§5.5.1, §7.4).
//!
//! Requests are written by hand, with header names capitalized as browsers send them,
//! so that every byte of the request and of the answer is the test's own.

mod common;

use common::{TestServer, FRAME_TIMEOUT};
use fenix_core::websocket::HandshakeError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The key and accept value of the example in RFC6455§1.3.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// The header lines of a valid upgrade, as Chromium sends them (less the ones the
/// server ignores).
const VALID_HEADERS: [(&str, &str); 5] = [
    ("Host", "localhost"),
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Key", KEY),
    ("Sec-WebSocket-Version", "13"),
];

/// Edits of [`VALID_HEADERS`]: a name given with `None` is removed, with a value
/// replaced (or added at the end).
type Changes<'a> = &'a [(&'a str, Option<&'a str>)];

/// A `GET /socket/websocket?vsn=2.0.0` with the valid headers edited by `changes`.
fn upgrade_request(method: &str, changes: Changes<'_>) -> String {
    let mut headers: Vec<(&str, &str)> = VALID_HEADERS.to_vec();
    for (name, value) in changes {
        headers.retain(|(n, _)| n != name);
        if let Some(value) = value {
            headers.push((name, value));
        }
    }
    let lines: String = headers.iter().map(|(name, value)| format!("{name}: {value}\r\n")).collect();
    format!("{method} /socket/websocket?vsn=2.0.0 HTTP/1.1\r\n{lines}\r\n")
}

/// The whole answer to a refused upgrade: the status, the fixed headers, `extra`
/// header lines, and the error's text as the body.
fn refusal(status_line: &str, extra: &str, error: HandshakeError) -> String {
    let body = error.to_string();
    format!(
        "HTTP/1.1 {status_line}\r\ncontent-length: {}\r\nvary: accept-encoding\r\n\
         cache-control: max-age=0, private, must-revalidate\r\n{extra}connection: close\r\n\r\n{body}",
        body.len()
    )
}

/// The answer to an accepted upgrade of [`KEY`] without a subprotocol.
const SWITCHING_PROTOCOLS: &str = "HTTP/1.1 101 Switching Protocols\r\n\
                                   upgrade: websocket\r\n\
                                   connection: Upgrade\r\n\
                                   sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
                                   cache-control: max-age=0, private, must-revalidate\r\n\r\n";

/// Sends `request` and reads the response head; returns it and the stream, still open.
async fn open(t: &TestServer, request: &str) -> (String, TcpStream) {
    let mut stream = TcpStream::connect(t.addr()).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write the request");
    let mut head = Vec::new();
    // Byte by byte: the server sends nothing after the head until the client speaks,
    // but this way no frame byte can be taken for part of the head.
    while !head.ends_with(b"\r\n\r\n") {
        let byte = tokio::time::timeout(FRAME_TIMEOUT, stream.read_u8()).await.expect("no hang").expect("a head");
        head.push(byte);
    }
    (String::from_utf8(head).expect("an ASCII head"), stream)
}

/// A masked close frame carrying `payload` (RFC6455§5.5.1; client frames are masked, §5.3).
fn client_close(payload: &[u8]) -> Vec<u8> {
    common::masked_frame(0x88, payload)
}

// ---------------------------------------------------------------------------------------
// The opening handshake
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_what_browsers_send() {
    let t = TestServer::start();
    let accepted: [(Changes<'_>, &str); 5] = [
        (&[], "Chromium, Node's ws"),
        (&[("Connection", Some("keep-alive, Upgrade"))], "Firefox"),
        (&[("Connection", Some("upgrade")), ("Upgrade", Some("WebSocket"))], "tokens in other cases"),
        (&[("Sec-WebSocket-Extensions", Some("permessage-deflate; client_max_window_bits"))], "an extension offer"),
        (&[("Origin", Some("http://localhost")), ("User-Agent", Some("Mozilla/5.0"))], "browser headers"),
    ];
    for (changes, what) in accepted {
        let (head, _stream) = open(&t, &upgrade_request("GET", changes)).await;
        assert_eq!(head, SWITCHING_PROTOCOLS, "{what}");
    }
    assert_eq!(t.app.connects().len(), accepted.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_names_are_case_insensitive() {
    let t = TestServer::start();
    let lower = format!(
        "GET /socket/websocket?vsn=2.0.0 HTTP/1.1\r\nhost: localhost\r\nupgrade: websocket\r\n\
         connection: Upgrade\r\nsec-websocket-key: {KEY}\r\nsec-websocket-version: 13\r\n\r\n"
    );
    let (head, _stream) = open(&t, &lower).await;
    assert_eq!(head, SWITCHING_PROTOCOLS);
    assert!(head.contains(ACCEPT));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsupported_version_answers_426_with_the_version_spoken() {
    let t = TestServer::start();
    let expected = refusal("426 Upgrade Required", "sec-websocket-version: 13\r\n", HandshakeError::UnsupportedVersion);
    let versions: [(Changes<'_>, &str); 4] = [
        (&[("Sec-WebSocket-Version", None)], "no version (RFC6455§4.2.1 item 6)"),
        (&[("Sec-WebSocket-Version", Some("8"))], "draft hybi-08"),
        (&[("Sec-WebSocket-Version", Some("14"))], "a version after 13"),
        (&[("Sec-WebSocket-Version", Some("13, 8"))], "a list of versions"),
    ];
    for (changes, what) in versions {
        assert_eq!(t.raw_http(&upgrade_request("GET", changes)).await, expected, "{what}");
    }
    assert!(t.app.connects().is_empty(), "a refused upgrade never reaches connect");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_handshakes_answer_400_with_the_reason() {
    let t = TestServer::start();
    use HandshakeError::*;
    let refused: [(&str, Changes<'_>, HandshakeError, &str); 11] = [
        ("POST", &[], NotGet, "not a GET (RFC6455§4.2.1 item 1)"),
        ("GET", &[("Upgrade", None)], NotWebSocket, "no Upgrade (item 3)"),
        ("GET", &[("Upgrade", Some("h2c"))], NotWebSocket, "an upgrade to another protocol"),
        ("GET", &[("Connection", None)], NotConnectionUpgrade, "no Connection (item 4)"),
        ("GET", &[("Connection", Some("keep-alive"))], NotConnectionUpgrade, "Connection without upgrade"),
        ("GET", &[("Connection", Some("close"))], NotConnectionUpgrade, "Connection: close"),
        ("GET", &[("Sec-WebSocket-Key", None)], InvalidKey, "no key (item 5)"),
        ("GET", &[("Sec-WebSocket-Key", Some("hello"))], InvalidKey, "a key that is not base64"),
        ("GET", &[("Sec-WebSocket-Key", Some("dGhlIHNhbXBsZSBub25jZQ"))], InvalidKey, "a key without its padding"),
        // base64 of the 15 bytes "the sample nonc" and of the 17 bytes "the sample nonce!"
        ("GET", &[("Sec-WebSocket-Key", Some("dGhlIHNhbXBsZSBub25j"))], InvalidKey, "a key of 15 bytes"),
        ("GET", &[("Sec-WebSocket-Key", Some("dGhlIHNhbXBsZSBub25jZSE="))], InvalidKey, "a key of 17 bytes"),
    ];
    for (method, changes, error, what) in refused {
        let expected = refusal("400 Bad Request", "", error);
        assert_eq!(t.raw_http(&upgrade_request(method, changes)).await, expected, "{what}");
    }
    let two_keys = upgrade_request("GET", &[("Sec-WebSocket-Key", Some(KEY)), ("sec-websocket-key", Some(KEY))]);
    assert_eq!(t.raw_http(&two_keys).await, refusal("400 Bad Request", "", InvalidKey), "a repeated key");
    assert!(t.app.connects().is_empty(), "a refused upgrade never reaches connect");
}

// ---------------------------------------------------------------------------------------
// The closing handshake
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_close_is_answered_with_its_code_or_1002() {
    let t = TestServer::start();
    let code = |code: u16| code.to_be_bytes().to_vec();
    let with_reason = |c: u16, reason: &[u8]| [&code(c)[..], reason].concat();
    // (close payload sent, code answered, why)
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (vec![], 1000, "no code: 1000, never 1005 (RFC6455§5.5.1, §7.4.1)"),
        (code(1000), 1000, "normal closure"),
        (with_reason(1001, b"bye"), 1001, "going away, with a reason"),
        (code(1003), 1003, "unacceptable data"),
        (code(1011), 1011, "unexpected condition"),
        (code(1012), 1012, "service restart (IANA registry)"),
        (code(1014), 1014, "bad gateway (IANA registry)"),
        (code(3000), 3000, "a library code (§7.4.2)"),
        (with_reason(4999, "é".as_bytes()), 4999, "a private code with a UTF-8 reason (§7.4.2)"),
        (code(999), 1002, "below 1000 (§7.4.2)"),
        (code(1004), 1002, "reserved (§7.4.1)"),
        (code(1005), 1002, "reported locally only (§7.4.1)"),
        (code(1006), 1002, "reported locally only (§7.4.1)"),
        (code(1015), 1002, "reported locally only (§7.4.1)"),
        (code(1016), 1002, "unassigned"),
        (code(2999), 1002, "unassigned"),
        (code(5000), 1002, "above the defined ranges"),
        (vec![0x03], 1002, "a one-byte payload (§5.5.1)"),
        (with_reason(1000, &[0xff, 0xfe]), 1002, "a reason that is not UTF-8 (§8.1)"),
    ];
    for (payload, answered, what) in cases {
        let (head, mut stream) = open(&t, &upgrade_request("GET", &[])).await;
        assert_eq!(head, SWITCHING_PROTOCOLS, "{what}");
        stream.write_all(&client_close(&payload)).await.expect("send the close");
        let mut answer = Vec::new();
        tokio::time::timeout(FRAME_TIMEOUT, stream.read_to_end(&mut answer)).await.expect("no hang").expect("read");
        // FIN + close opcode, unmasked length 2, the code; then the server closes the TCP connection.
        let [high, low] = answered.to_be_bytes();
        assert_eq!(answer, [0x88, 0x02, high, low], "{what}");
    }
}

/// A connection that sends no request head, or stops half-way through one, is answered
/// 408 and closed once the head timeout passes; a client that connects meanwhile is
/// upgraded as usual.
#[tokio::test]
async fn an_unfinished_request_head_is_answered_408_after_the_head_timeout() {
    let head_timeout = std::time::Duration::from_millis(300);
    let t = TestServer::with_config(|config| config.head_timeout = head_timeout);
    let silent = TcpStream::connect(t.addr()).await.unwrap();
    let mut half = TcpStream::connect(t.addr()).await.unwrap();
    half.write_all(b"GET /socket/websocket?vsn=2.0.0 HTTP/1.1\r\nHost: localhost\r\n").await.unwrap();

    // Meanwhile a whole upgrade is answered at once.
    let (head, _upgraded) = open(&t, &upgrade_request("GET", &[])).await;
    assert_eq!(head, SWITCHING_PROTOCOLS);

    let timeout_answer = "HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nvary: accept-encoding\r\n\
                          cache-control: max-age=0, private, must-revalidate\r\nconnection: close\r\n\r\n";
    for (what, mut stream) in [("silent", silent), ("half a head", half)] {
        let mut answer = Vec::new();
        tokio::time::timeout(FRAME_TIMEOUT, stream.read_to_end(&mut answer)).await.expect("closed, not held").unwrap();
        assert_eq!(String::from_utf8(answer).unwrap(), timeout_answer, "{what}");
    }
}
