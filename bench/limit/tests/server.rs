//! The limit server binary driven by a real WebSocket client (tokio-tungstenite):
//! the benchmark events, with the frames the conformance app sends.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{connect_async, MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A server process on an ephemeral port, killed on drop.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start() -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fenix-limit"))
            .env("PORT", "0")
            .stdout(Stdio::piped())
            .spawn()
            .expect("the server starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port = line.trim().strip_prefix("listening on 127.0.0.1:").expect("the listening line").parse().unwrap();
        Server { child, port }
    }

    /// Connects with these params, and `vsn=2.0.0`.
    async fn connect(&self, params: &str) -> Ws {
        let url = format!("ws://127.0.0.1:{}/socket/websocket?{params}vsn=2.0.0", self.port);
        connect_async(url).await.expect("the upgrade succeeds").0
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn send(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text)).await.unwrap();
}

async fn recv(ws: &mut Ws) -> String {
    match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
        Ok(Some(Ok(Message::Text(text)))) => text.to_string(),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

/// Asserts that nothing arrives for a short while.
async fn quiet(ws: &mut Ws) {
    if let Ok(message) = tokio::time::timeout(Duration::from_millis(100), ws.next()).await {
        panic!("expected nothing, got {message:?}");
    }
}

async fn joined(server: &Server, user_id: &str, topic: &str) -> Ws {
    let mut ws = server.connect(&format!("user_id={user_id}&")).await;
    send(&mut ws, &format!(r#"["1","1","{topic}","phx_join",{{}}]"#)).await;
    assert_eq!(
        recv(&mut ws).await,
        format!(r#"["1","1","{topic}","phx_reply",{{"response":{{"joined":"{topic}","user_id":"{user_id}"}},"status":"ok"}}]"#)
    );
    ws
}

#[tokio::test]
async fn upgrade_answers_like_phoenix() {
    let server = Server::start();
    let url = format!("ws://127.0.0.1:{}/socket/websocket?vsn=2.0.0", server.port);
    let (_ws, response) = connect_async(url).await.unwrap();
    let names: Vec<&str> = response.headers().keys().map(|name| name.as_str()).collect();
    assert_eq!(names, ["upgrade", "connection", "sec-websocket-accept", "cache-control"]);
    assert_eq!(response.headers()["cache-control"], "max-age=0, private, must-revalidate");

    for path in ["/other/websocket?vsn=2.0.0", "/socket/websocket?vsn=1.0.0"] {
        let refused = connect_async(format!("ws://127.0.0.1:{}{path}", server.port)).await;
        assert!(refused.is_err(), "{path} must be refused");
    }
}

#[tokio::test]
async fn join_heartbeat_and_echo() {
    let server = Server::start();
    let mut ws = joined(&server, "u1", "room:lobby").await;

    send(&mut ws, r#"[null,"4","phoenix","heartbeat",{}]"#).await;
    assert_eq!(recv(&mut ws).await, r#"[null,"4","phoenix","phx_reply",{"response":{},"status":"ok"}]"#);

    // The payload comes back re-encoded as Phoenix does: compact, keys sorted.
    send(&mut ws, r#"["1","5","room:lobby","echo",{"n": 1, "hello": "world"}]"#).await;
    assert_eq!(recv(&mut ws).await, r#"["1","5","room:lobby","phx_reply",{"response":{"hello":"world","n":1},"status":"ok"}]"#);

    // No user_id: null. Params are form-decoded.
    let mut anonymous = server.connect("").await;
    send(&mut anonymous, r#"[null,"1","room:x","phx_join",{}]"#).await;
    assert_eq!(recv(&mut anonymous).await, r#"[null,"1","room:x","phx_reply",{"response":{"joined":"room:x","user_id":null},"status":"ok"}]"#);
    let mut encoded = server.connect("user_id=a%20b+c&").await;
    send(&mut encoded, r#"[null,"1","room:x","phx_join",{}]"#).await;
    assert_eq!(recv(&mut encoded).await, r#"[null,"1","room:x","phx_reply",{"response":{"joined":"room:x","user_id":"a b c"},"status":"ok"}]"#);
}

#[tokio::test]
async fn shout_reaches_every_subscriber_without_a_reply() {
    let server = Server::start();
    let mut a = joined(&server, "a", "room:s").await;
    let mut b = joined(&server, "b", "room:s").await;
    let mut elsewhere = joined(&server, "c", "room:other").await;

    send(&mut a, r#"["1","2","room:s","shout",{"msg":"hi all"}]"#).await;
    let shout = r#"[null,null,"room:s","shout",{"msg":"hi all"}]"#;
    assert_eq!(recv(&mut a).await, shout);
    assert_eq!(recv(&mut b).await, shout);
    quiet(&mut a).await;
    quiet(&mut elsewhere).await;
}

#[tokio::test]
async fn blast_sends_n_broadcasts_in_order_then_the_reply() {
    let server = Server::start();
    let mut a = joined(&server, "a", "room:b").await;
    let mut b = joined(&server, "b", "room:b").await;

    // More than one chunk, and a message right behind the blast: its reply comes after.
    let n = 1000;
    send(&mut a, &format!(r#"["1","2","room:b","blast",{{"n":{n},"body":"x"}}]"#)).await;
    send(&mut a, r#"["1","3","room:b","echo",{}]"#).await;
    for i in 1..=n {
        let blasted = format!(r#"[null,null,"room:b","blasted",{{"body":"x","i":{i}}}]"#);
        assert_eq!(recv(&mut a).await, blasted);
        assert_eq!(recv(&mut b).await, blasted);
    }
    assert_eq!(recv(&mut a).await, format!(r#"["1","2","room:b","phx_reply",{{"response":{{"n":{n}}},"status":"ok"}}]"#));
    assert_eq!(recv(&mut a).await, r#"["1","3","room:b","phx_reply",{"response":{},"status":"ok"}]"#);
    quiet(&mut b).await;
}

#[tokio::test]
async fn leave_replies_then_closes_the_channel() {
    let server = Server::start();
    let mut a = joined(&server, "a", "room:l").await;
    let mut b = joined(&server, "b", "room:l").await;

    send(&mut a, r#"["1","2","room:l","phx_leave",{}]"#).await;
    assert_eq!(recv(&mut a).await, r#"["1","2","room:l","phx_reply",{"response":{},"status":"ok"}]"#);
    assert_eq!(recv(&mut a).await, r#"["1","1","room:l","phx_close",{}]"#);

    // No longer subscribed, and the topic is no longer joined.
    send(&mut b, r#"["1","2","room:l","shout",{}]"#).await;
    assert_eq!(recv(&mut b).await, r#"[null,null,"room:l","shout",{}]"#);
    quiet(&mut a).await;
    send(&mut a, r#"["1","3","room:l","echo",{}]"#).await;
    assert_eq!(recv(&mut a).await, r#"[null,"3","room:l","phx_reply",{"response":{"reason":"unmatched topic"},"status":"error"}]"#);
}

#[tokio::test]
async fn unknown_events_crash_the_channel() {
    let server = Server::start();
    let mut ws = joined(&server, "a", "room:c").await;
    send(&mut ws, r#"["1","2","room:c","nope",{}]"#).await;
    assert_eq!(recv(&mut ws).await, r#"["1","1","room:c","phx_error",{"reason":"channel_crash"}]"#);
}

#[tokio::test]
async fn client_close_is_answered_with_1000() {
    let server = Server::start();
    let mut ws = joined(&server, "a", "room:x").await;
    ws.close(None).await.unwrap();
    match tokio::time::timeout(Duration::from_secs(5), ws.next()).await.unwrap() {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(frame.code, CloseCode::Normal),
        other => panic!("expected a close frame, got {other:?}"),
    }
}

#[tokio::test]
async fn a_client_that_does_not_read_is_disconnected() {
    let server = Server::start();
    let mut reader = joined(&server, "reader", "room:slow").await;
    let mut idle = joined(&server, "idle", "room:slow").await;

    // ~40 MB to each subscriber: far more than socket buffers and a 1024-frame queue hold.
    let n = 20_000;
    let body = "x".repeat(2000);
    send(&mut reader, &format!(r#"["1","2","room:slow","blast",{{"n":{n},"body":"{body}"}}]"#)).await;
    for _ in 1..=n {
        recv(&mut reader).await;
    }
    assert!(recv(&mut reader).await.contains("phx_reply"));

    // The one that did not read gets what was written before the drop, then the end.
    let mut received = 0;
    while let Some(Ok(Message::Text(_))) = tokio::time::timeout(Duration::from_secs(5), idle.next()).await.unwrap() {
        received += 1;
    }
    assert!(received < n, "received all {n} frames");
}
