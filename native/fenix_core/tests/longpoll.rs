//! The long-poll transport over raw HTTP/1.1 against the plain-Rust test app: a
//! session's lifecycle (open, post, poll, 204 after the window, the end after 1.5
//! windows without a poll, with its channels told), both serializers, kept-alive
//! connections, the CORS preflight, and the bounds (request body, lines per batch, a
//! session's buffer, sessions counted by the connection limits).
//!
//! The windows here are short (a few hundred ms) so that the tests are quick; the
//! assertions wait with generous bounds and never measure a time.

mod common;

use std::time::Duration;

use common::{eventually, Pacer, TestServer, FRAME_TIMEOUT};
use fenix_core::protocol::Body;
use fenix_core::server::LongPollConfig;
use fenix_core::ClosedReason;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WINDOW: Duration = Duration::from_millis(300);

fn server_with(configure: impl FnOnce(&mut fenix_core::server::SocketConfig)) -> TestServer {
    TestServer::with(|socket| {
        socket.longpoll = Some(LongPollConfig { window: WINDOW, ..LongPollConfig::default() });
        configure(socket);
    })
}

/// One HTTP exchange on `stream`: the status, the headers (lower-case names) and the body.
async fn exchange(stream: &mut TcpStream, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut head = format!("{method} {target} HTTP/1.1\r\nhost: localhost\r\ncontent-length: {}\r\n", body.len());
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    tokio::time::timeout(FRAME_TIMEOUT, read_response(stream)).await.expect("an answer")
}

async fn read_response(stream: &mut TcpStream) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut buf = Vec::new();
    let end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        let n = stream.read_buf(&mut buf).await.unwrap();
        assert!(n > 0, "connection closed before the answer's head");
    };
    let head = std::str::from_utf8(&buf[..end]).unwrap().to_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|line| {
            let (name, value) = line.split_once(':').unwrap();
            (name.to_ascii_lowercase(), value.trim().to_owned())
        })
        .collect();
    let len: usize = headers.iter().find(|(n, _)| n == "content-length").map_or(0, |(_, v)| v.parse().unwrap());
    let mut body = buf[end + 4..].to_vec();
    while body.len() < len {
        let n = stream.read_buf(&mut body).await.unwrap();
        assert!(n > 0, "connection closed in the answer's body");
    }
    (status, headers, body)
}

/// A long-poll client: one kept-alive connection for polls and one for posts, as a
/// browser's pool has.
struct Client {
    polls: TcpStream,
    posts: TcpStream,
    query: String,
    token: String,
}

impl Client {
    /// Opens a session with `params`; panics unless it is opened.
    async fn open(t: &TestServer, params: &str) -> Client {
        let (status, answer) = Client::try_open(t, params).await;
        assert_eq!((status, answer["status"].as_u64()), (200, Some(410)), "{answer}");
        assert_eq!(answer["messages"], json!([]));
        let token = answer["token"].as_str().unwrap().to_owned();
        let posts = TcpStream::connect(t.addr()).await.unwrap();
        Client { polls: TcpStream::connect(t.addr()).await.unwrap(), posts, query: params.to_owned(), token }
    }

    async fn try_open(t: &TestServer, params: &str) -> (u16, Value) {
        let mut stream = TcpStream::connect(t.addr()).await.unwrap();
        let (status, _, body) = exchange(&mut stream, "GET", &format!("/socket/longpoll?{params}"), &[], b"").await;
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    /// Opens a session with `params` and joins `topic`.
    async fn joined(t: &TestServer, params: &str, topic: &str) -> Client {
        let mut client = Client::open(t, params).await;
        assert_eq!(client.post(&[&format!(r#"["1","1","{topic}","phx_join",{{}}]"#)]).await, 200);
        assert_eq!(client.messages(1).await[0][4]["status"], "ok");
        client
    }

    /// Polls until the session is gone: the answer that says so.
    async fn until_gone(&mut self) -> Value {
        tokio::time::timeout(FRAME_TIMEOUT, async {
            loop {
                let answer = self.poll().await;
                if answer["status"] == 410 {
                    return answer;
                }
            }
        })
        .await
        .expect("the session ends")
    }

    fn target(&self) -> String {
        format!("/socket/longpoll?{}&token={}", self.query, self.token)
    }

    /// Posts `lines` as one ndjson batch; the answer's JSON status.
    async fn post(&mut self, lines: &[&str]) -> u64 {
        let target = self.target();
        let body = lines.join("\n");
        let (status, _, body) = exchange(&mut self.posts, "POST", &target, &[("content-type", "application/x-ndjson")], body.as_bytes()).await;
        assert_eq!(status, 200);
        serde_json::from_slice::<Value>(&body).unwrap()["status"].as_u64().unwrap()
    }

    /// One poll: the JSON answer.
    async fn poll(&mut self) -> Value {
        let target = self.target();
        let (status, headers, body) = exchange(&mut self.polls, "GET", &target, &[], b"").await;
        assert_eq!(status, 200);
        assert!(headers.contains(&("cache-control".into(), "no-store".into())), "{headers:?}");
        assert!(headers.contains(&("access-control-allow-origin".into(), "*".into())), "{headers:?}");
        serde_json::from_slice(&body).unwrap()
    }

    /// Polls until `n` messages came (each decoded from its JSON string).
    async fn messages(&mut self, n: usize) -> Vec<Value> {
        let mut messages = Vec::new();
        tokio::time::timeout(FRAME_TIMEOUT, async {
            while messages.len() < n {
                let answer = self.poll().await;
                for message in answer["messages"].as_array().unwrap() {
                    messages.push(serde_json::from_str(message.as_str().unwrap()).unwrap());
                }
            }
        })
        .await
        .expect("the messages");
        messages
    }
}

#[tokio::test]
async fn a_session_joins_pushes_and_polls_over_kept_alive_connections() {
    let t = server_with(|_| {});
    let mut client = Client::open(&t, "vsn=2.0.0&user_id=lp").await;
    assert_eq!(client.post(&[r#"["1","1","room:a","phx_join",{}]"#, r#"["1","2","room:a","echo",{"n":1}]"#]).await, 200);
    let messages = client.messages(2).await;
    assert_eq!(messages[0], json!(["1", "1", "room:a", "phx_reply", {"status": "ok", "response": {"joined": "room:a", "user_id": "lp"}}]));
    assert_eq!(messages[1], json!(["1", "2", "room:a", "phx_reply", {"status": "ok", "response": {"n": 1}}]));
    // Nothing more: the poll waits for the window, then 204 with the token.
    let empty = client.poll().await;
    assert_eq!(empty, json!({"status": 204, "token": client.token, "messages": []}));
    // The token may come in the header instead of the param.
    let (status, _, body) = exchange(
        &mut client.posts,
        "POST",
        "/socket/longpoll?vsn=2.0.0",
        &[("x-phoenix-longpoll-token", &client.token.clone())],
        br#"["1","3","room:a","echo",{"n":3}]"#,
    )
    .await;
    assert_eq!((status, serde_json::from_slice::<Value>(&body).unwrap()), (200, json!({"status": 200})));
    assert_eq!(client.messages(1).await[0][4]["response"], json!({"n": 3}));
}

#[tokio::test]
async fn serializer_1_0_0_over_long_poll() {
    let t = server_with(|_| {});
    let mut client = Client::open(&t, "vsn=1.0.0&user_id=v1").await;
    let join = r#"{"topic":"room:v1","event":"phx_join","payload":{},"ref":"1","join_ref":"1"}"#;
    assert_eq!(client.post(&[join]).await, 200);
    let reply = &client.messages(1).await[0];
    assert_eq!(reply["event"], "phx_reply");
    assert_eq!(reply["payload"]["response"], json!({"joined": "room:v1", "user_id": "v1"}));
}

#[tokio::test]
async fn refused_and_unknown_sessions() {
    let t = server_with(|_| {});
    assert_eq!(Client::try_open(&t, "vsn=2.0.0&token=deny").await, (200, json!({"status": 403})));
    assert_eq!(Client::try_open(&t, "vsn=9.9.9").await, (200, json!({"status": 403})));
    let mut stream = TcpStream::connect(t.addr()).await.unwrap();
    let (status, _, body) = exchange(&mut stream, "POST", "/socket/longpoll?vsn=2.0.0&token=nope", &[], b"[]").await;
    assert_eq!((status, serde_json::from_slice::<Value>(&body).unwrap()), (200, json!({"status": 410})));
    let (status, headers, _) = exchange(&mut stream, "OPTIONS", "/socket/longpoll", &[("access-control-request-headers", "content-type")], b"").await;
    assert_eq!(status, 200);
    for header in [("access-control-allow-headers", "content-type"), ("access-control-allow-methods", "get, post, options"), ("access-control-allow-origin", "*")] {
        assert!(headers.contains(&(header.0.into(), header.1.into())), "{header:?} in {headers:?}");
    }
    // A socket without long-poll has no such path.
    let plain = TestServer::start();
    let mut stream = TcpStream::connect(plain.addr()).await.unwrap();
    assert_eq!(exchange(&mut stream, "GET", "/socket/longpoll?vsn=2.0.0", &[], b"").await.0, 404);
}

#[tokio::test]
async fn a_session_nobody_polls_ends_with_its_channels() {
    let t = server_with(|_| {});
    let mut client = Client::joined(&t, "vsn=2.0.0&user_id=idle", "room:idle").await;
    assert_eq!(t.registry().counts("room:idle").0, 1);
    // No poll for 1.5 windows: the session ends, and its channel is told.
    eventually("the channel is told its connection closed", || {
        t.app.closed_channels().iter().any(|(topic, _, reason)| topic == "room:idle" && *reason == ClosedReason::ConnectionClosed)
    })
    .await;
    assert_eq!(t.registry().counts("room:idle").0, 0);
    assert_eq!(client.post(&[r#"[null,"2","phoenix","heartbeat",{}]"#]).await, 410);
}

#[tokio::test]
async fn a_disconnect_ends_the_session_after_what_was_queued() {
    let t = server_with(|_| {});
    let mut client = Client::joined(&t, "vsn=2.0.0&user_id=bye", "room:bye").await;
    Pacer::new().broadcast(&t.server, "users_socket:bye", "disconnect", Body::Json(b"{}"), None).await;
    assert_eq!(client.until_gone().await, json!({"status": 410}));
}

#[tokio::test]
async fn bodies_and_batches_are_bounded() {
    let t = server_with(|socket| socket.longpoll.as_mut().unwrap().max_body_size = 4096);
    let mut client = Client::open(&t, "vsn=2.0.0&user_id=big").await;
    let big = vec![b'['; 5000];
    let target = client.target();
    let (status, headers, _) = exchange(&mut client.posts, "POST", &target, &[], &big).await;
    assert_eq!(status, 413);
    assert!(headers.contains(&("connection".into(), "close".into())));
    // 101 lines: more than a batch may hold; the session ends.
    let mut client = Client::open(&t, "vsn=2.0.0&user_id=many").await;
    let heartbeats = vec![r#"[null,"1","phoenix","heartbeat",{}]"#; fenix_core::server::MAX_BATCH + 1];
    assert_eq!(client.post(&heartbeats).await, 400);
    assert_eq!(client.post(&heartbeats[..1]).await, 410);
}

#[tokio::test]
async fn a_session_whose_buffer_overflows_ends() {
    let t = server_with(|socket| socket.outbox_capacity = 4);
    let mut client = Client::joined(&t, "vsn=2.0.0&user_id=slow", "room:overflow").await;
    let echoes: Vec<String> = (0..20).map(|i| format!(r#"["1","{i}","room:overflow","echo",{{}}]"#)).collect();
    let echoes: Vec<&str> = echoes.iter().map(String::as_str).collect();
    assert_eq!(client.post(&echoes).await, 200);
    // Twenty replies into room for four: the session takes nothing more, and its next
    // poll ends it. Not polled meanwhile (a poll would make room): the channel answers
    // twenty echoes well within a window.
    tokio::time::sleep(WINDOW).await;
    assert_eq!(client.until_gone().await, json!({"status": 410}));
    eventually("its channel is told", || t.app.closed_channels().iter().any(|(topic, _, _)| topic == "room:overflow")).await;
}

#[tokio::test]
async fn sessions_count_as_connections() {
    let t = TestServer::with_config(|config| {
        config.max_connections = 1;
        config.sockets[0].longpoll = Some(LongPollConfig { window: WINDOW, ..LongPollConfig::default() });
    });
    let _first = Client::open(&t, "vsn=2.0.0").await;
    let (status, answer) = Client::try_open(&t, "vsn=2.0.0").await;
    assert_eq!((status, answer), (503, Value::Null), "beyond max_connections");
    // Once the first session has ended (nobody polls it), another opens.
    tokio::time::timeout(FRAME_TIMEOUT, async {
        while Client::try_open(&t, "vsn=2.0.0").await.0 != 200 {
            tokio::time::sleep(WINDOW / 2).await;
        }
    })
    .await
    .expect("a session once the first is gone");
}
