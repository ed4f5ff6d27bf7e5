//! A plain-Rust application and a WebSocket client for the server tests.
//!
//! The application (`App`) behaves like the conformance app's `room:*` channel, reduced
//! to what the engine needs to be exercised:
//! - connect: refused when the `token` param or the auth token is `deny`; otherwise the
//!   socket id is `users_socket:<user_id>` and the socket data is the user id (JSON); a
//!   long-poll session's token is `session-<connection id>`;
//! - join `room:private`: `{"reason":"unauthorized"}`; any other `room:*`:
//!   `{"joined":<topic>,"user_id":<user_id>}`; other topics: `{"reason":"unmatched topic"}`;
//!   joins of `room:slow*` wait until the test answers them ([`App::next_deferred_join`]);
//!   a join payload `{"intercept":["e"]}` makes the channel intercept event `e`;
//! - each joined channel is a task (like a channel process) fed by its [`ChannelSink`]:
//!   `echo` replies `ok` with the payload (binary too), `echo_binary` replies `ok` with
//!   the bytes 00 01 02 03 fe ff, binary, `shout` broadcasts `shout` to the
//!   topic, `shout_from` broadcasts `shout` to everyone but the sender and replies `ok {}`,
//!   `phx_leave` replies `ok` and closes the channel; what the engine tells a channel it
//!   closed is recorded ([`App::closed_channels`]); every message handled gives its
//!   inbound credit back, except on `room:stuck*`, whose channel never does;
//!
//! The client writes and expects frames in the 2.0.0 array form of the capture
//! (`shared/vectors/phoenix_wire_frames.md`); a 1.0.0 client rewrites them into objects.
#![allow(dead_code)] // each test binary uses its own part

use std::any::Any;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Wake, Waker};
use std::time::Duration;

use fenix_core::protocol::{Body, ClientRef, Event, Payload, Serializer, Status};
use fenix_core::registry::Registry;
use fenix_core::server::{Broadcasted, Channel, Config, Conn, JoinRef, Pace, Sender, Server, SocketConfig, TransportKind};
use fenix_core::{ChannelEvent, ChannelSink, ClosedReason, ConnectRequest, Handler, JoinRequest, Sink};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Notify};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, Response};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for a frame before it fails (a guard against hangs, not a timing assertion).
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(5);

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Both serializers, for the cases they share.
pub const SERIALIZERS: [Serializer; 2] = [Serializer::V1, Serializer::V2];

/// A server on 127.0.0.1:0 with one socket at `/socket`, running the test [`App`].
pub struct TestServer {
    pub app: Arc<App>,
    pub server: Arc<Server>,
}

impl TestServer {
    /// A server with the default socket options.
    pub fn start() -> TestServer {
        TestServer::with(|_| {})
    }

    /// A server whose socket options are adjusted by `configure`.
    pub fn with(configure: impl FnOnce(&mut SocketConfig)) -> TestServer {
        let mut socket = SocketConfig::new("/socket");
        configure(&mut socket);
        TestServer::with_config(|config| config.sockets = vec![socket])
    }

    /// A server whose options (one socket at `/socket` unless changed) are adjusted by `configure`.
    pub fn with_config(configure: impl FnOnce(&mut Config)) -> TestServer {
        TestServer::on(None, configure)
    }

    /// A server with an intake runtime of its own (one thread), as Fenix runs it
    /// (`Server::start_with_intake`); the test's runtime is the main one.
    pub fn with_intake(configure: impl FnOnce(&mut Config)) -> TestServer {
        // Leaked: a runtime cannot be dropped inside another's tasks.
        let intake = Box::leak(Box::new(
            tokio::runtime::Builder::new_multi_thread().worker_threads(1).thread_name("intake").enable_all().build().expect("intake runtime"),
        ));
        TestServer::on(Some(intake.handle()), configure)
    }

    fn on(intake: Option<&tokio::runtime::Handle>, configure: impl FnOnce(&mut Config)) -> TestServer {
        let mut config =
            Config { addr: Some(SocketAddr::from(([127, 0, 0, 1], 0))), sockets: vec![SocketConfig::new("/socket")], ..Config::default() };
        configure(&mut config);
        let app = Arc::new(App::default());
        let handler: Arc<dyn Handler> = Arc::clone(&app) as Arc<dyn Handler>;
        let main = tokio::runtime::Handle::current();
        let server = match intake {
            None => Server::start(&main, config, handler),
            Some(intake) => Server::start_with_intake(&main, intake, config, handler),
        }
        .expect("server starts");
        let server = Arc::new(server);
        app.server.set(Arc::clone(&server)).expect("set once");
        TestServer { app, server }
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    pub fn registry(&self) -> &Registry<Conn> {
        self.server.registry()
    }

    /// Connects with `vsn` of `serializer` and the extra query `params` (`"user_id=u1"`).
    pub async fn connect(&self, serializer: Serializer, params: &str) -> Client {
        let query = format!("vsn={}&{params}", vsn(serializer));
        let (ws, response) = self.try_connect(&query, None).await.expect("upgrade accepted");
        assert_eq!(response.status(), 101);
        Client::new(ws, serializer, params)
    }

    /// Connects `n` clients at once.
    pub async fn connect_many(&self, n: usize, serializer: impl Fn(usize) -> Serializer, params: &str) -> Vec<Client> {
        futures_util::future::join_all((0..n).map(|i| self.connect(serializer(i), params))).await
    }

    /// A WebSocket upgrade of `/socket/websocket?<query>`, optionally offering `Sec-WebSocket-Protocol`.
    pub async fn try_connect(
        &self,
        query: &str,
        protocols: Option<&str>,
    ) -> Result<(Ws, Response<Option<Vec<u8>>>), tungstenite::Error> {
        let mut request = format!("ws://{}/socket/websocket?{query}", self.addr()).into_client_request()?;
        if let Some(protocols) = protocols {
            request.headers_mut().insert("sec-websocket-protocol", HeaderValue::from_str(protocols).unwrap());
        }
        tokio::time::timeout(FRAME_TIMEOUT, tokio_tungstenite::connect_async(request)).await.expect("no hang")
    }

    /// Sends a raw HTTP request head and returns the whole response (the server closes after it).
    pub async fn raw_http(&self, head: &str) -> String {
        let mut stream = TcpStream::connect(self.addr()).await.unwrap();
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        tokio::time::timeout(FRAME_TIMEOUT, stream.read_to_end(&mut response)).await.expect("no hang").unwrap();
        String::from_utf8(response).unwrap()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.server.stop();
    }
}

pub fn vsn(serializer: Serializer) -> &'static str {
    match serializer {
        Serializer::V1 => "1.0.0",
        Serializer::V2 => "2.0.0",
    }
}

/// Polls `condition` until it holds (a guard against hangs, not a timing assertion).
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + FRAME_TIMEOUT;
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

// ---------------------------------------------------------------------------------------
// The application
// ---------------------------------------------------------------------------------------

/// A channel the engine closed: (topic, join_ref, reason).
pub type ClosedChannel = (String, Option<ClientRef>, ClosedReason);

#[derive(Default)]
pub struct App {
    server: OnceLock<Arc<Server>>,
    connects: Mutex<Vec<ConnectRequest>>,
    conn_ids: Mutex<HashMap<String, u64>>,
    /// What the engine told channels that it closed.
    closed: Arc<Mutex<Vec<ClosedChannel>>>,
    deferred: Mutex<VecDeque<(Arc<Conn>, JoinRequest)>>,
    deferred_ready: Notify,
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

impl Handler for App {
    fn connect(&self, conn: &Arc<Conn>, request: ConnectRequest) {
        let denied = param(&request.params, "token") == Some("deny") || request.auth_token.as_deref() == Some("deny");
        let user_id = param(&request.params, "user_id").map(str::to_owned);
        let request_transport = request.transport;
        self.connects.lock().unwrap().push(request);
        if denied {
            conn.refuse().unwrap();
            return;
        }
        if let Some(id) = &user_id {
            self.conn_ids.lock().unwrap().insert(id.clone(), conn.id());
        }
        let socket_id = user_id.as_ref().map(|id| format!("users_socket:{id}"));
        let socket_data = serde_json::to_vec(&user_id).unwrap();
        // A long-poll session needs a token: unguessable in an application, the
        // connection's id is enough here.
        let session_token = (request_transport == TransportKind::LongPoll).then(|| format!("session-{}", conn.id()));
        conn.accept_session(socket_id, socket_data.into(), session_token).unwrap();
    }

    fn join(&self, conn: &Arc<Conn>, request: JoinRequest) {
        if request.topic.starts_with("room:slow") {
            self.deferred.lock().unwrap().push_back((Arc::clone(conn), request));
            self.deferred_ready.notify_one();
            return;
        }
        self.answer_join(conn, request);
    }
}

impl App {
    /// The connect requests seen so far.
    pub fn connects(&self) -> Vec<ConnectRequest> {
        self.connects.lock().unwrap().clone()
    }

    /// The id of the last connection of `user_id`.
    pub fn conn_id(&self, user_id: &str) -> u64 {
        self.conn_ids.lock().unwrap()[user_id]
    }

    /// What the engine told channels that it closed, in order.
    pub fn closed_channels(&self) -> Vec<ClosedChannel> {
        self.closed.lock().unwrap().clone()
    }

    /// Waits for the next join of a `room:slow*` topic.
    pub async fn next_deferred_join(&self) -> (Arc<Conn>, JoinRequest) {
        tokio::time::timeout(FRAME_TIMEOUT, async {
            loop {
                let notified = self.deferred_ready.notified();
                if let Some(join) = self.deferred.lock().unwrap().pop_front() {
                    return join;
                }
                notified.await;
            }
        })
        .await
        .expect("a deferred join")
    }

    /// Answers a join by the rules of the `room:*` channel.
    pub fn answer_join(&self, conn: &Arc<Conn>, request: JoinRequest) {
        let join =
            JoinRef { topic: &request.topic, join_ref: request.join_ref.as_ref(), r#ref: request.r#ref.as_ref() };
        let pacer = Pacer::new();
        if request.topic == "room:private" {
            let _ = conn.join_failed(pacer.sender(), &join, br#"{"reason":"unauthorized"}"#);
            return;
        }
        if !request.topic.starts_with("room:") {
            let _ = conn.join_failed(pacer.sender(), &join, br#"{"reason":"unmatched topic"}"#);
            return;
        }
        let user_id: Value = serde_json::from_slice(&request.socket_data).unwrap();
        let response = serde_json::to_vec(&json!({"joined": request.topic, "user_id": user_id})).unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let make_sink = |_: &Arc<Channel>| -> Sink { Arc::new(ChannelProcess { conn_id: conn.id(), tx: tx.clone() }) };
        // The join payload may list the events the channel intercepts: {"intercept":["e"]}.
        let intercepts: Vec<String> = match &request.payload {
            Payload::Json(payload) => serde_json::from_value(payload["intercept"].clone()).unwrap_or_default(),
            Payload::Binary(_) => Vec::new(),
        };
        let held = |message, size| {
            let _ = tx.send(ChannelEvent::In { message, size });
        };
        if let Ok((channel, _pace)) = conn.joined(pacer.sender(), &join, &response, make_sink, &intercepts, held) {
            let task = ChannelTask {
                server: Arc::clone(self.server.get().expect("server started")),
                channel,
                pacer,
                closed: Arc::clone(&self.closed),
            };
            tokio::spawn(task.run(rx));
        }
    }

    /// Refuses a join with `reason`.
    pub fn refuse_join(&self, conn: &Arc<Conn>, request: &JoinRequest, reason: &str) {
        let join =
            JoinRef { topic: &request.topic, join_ref: request.join_ref.as_ref(), r#ref: request.r#ref.as_ref() };
        let response = serde_json::to_vec(&json!({ "reason": reason })).unwrap();
        let _ = conn.join_failed(Pacer::new().sender(), &join, &response).expect("join still pending");
    }
}

/// The sink of a joined channel: a queue to its task.
#[derive(Debug)]
pub struct ChannelProcess {
    /// The connection the channel belongs to.
    pub conn_id: u64,
    tx: mpsc::UnboundedSender<ChannelEvent>,
}

impl ChannelSink for ChannelProcess {
    fn deliver(&self, event: ChannelEvent) {
        let _ = self.tx.send(event);
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// A sender of the test app (a channel task, like a channel process): a unique id, and a
/// waker that lets the task go on after it was told to wait.
pub struct Pacer {
    id: u64,
    resumed: Arc<Notify>,
    waker: Box<dyn Fn() -> Waker + Send + Sync>,
}

struct NotifyWaker(Arc<Notify>);

impl Wake for NotifyWaker {
    fn wake(self: Arc<Self>) {
        self.0.notify_one();
    }
}

impl Pacer {
    pub fn new() -> Pacer {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let resumed = Arc::new(Notify::new());
        let waker = {
            let resumed = Arc::clone(&resumed);
            Box::new(move || Waker::from(Arc::new(NotifyWaker(Arc::clone(&resumed))))) as Box<dyn Fn() -> Waker + Send + Sync>
        };
        Pacer { id: NEXT.fetch_add(1, Ordering::Relaxed), resumed, waker }
    }

    pub fn sender(&self) -> Sender<'_> {
        Sender { id: self.id, waker: &*self.waker }
    }

    /// Waits if told to.
    pub async fn pace(&self, pace: Pace) {
        if pace == Pace::Wait {
            self.resumed.notified().await;
        }
    }

    /// Broadcasts through `server`, as this sender; says whether to wait.
    pub fn broadcast_now(&self, server: &Server, topic: &str, event: &str, body: Body<'_>, exclude: Option<u64>) -> Pace {
        let message = fenix_core::fanout::Broadcast { event, body, exclude };
        match server.broadcast(self.sender(), &message, topic, usize::MAX, |_| {}) {
            Ok(Broadcasted::Queued(pace)) => pace,
            Ok(Broadcasted::TooManyInterceptors(n)) => panic!("no limit was set, yet {n} interceptors"),
            Err(error) => panic!("a broadcast the tests cannot encode: {error}"),
        }
    }

    /// Broadcasts through `server`, as this sender, and waits if told to.
    pub async fn broadcast(&self, server: &Server, topic: &str, event: &str, body: Body<'_>, exclude: Option<u64>) {
        let pace = self.broadcast_now(server, topic, event, body, exclude);
        self.pace(pace).await;
    }
}

impl Default for Pacer {
    fn default() -> Self {
        Pacer::new()
    }
}

/// A joined channel: its task handles the client's messages one at a time, and gives
/// each message's credit back once handled.
struct ChannelTask {
    server: Arc<Server>,
    channel: Arc<Channel>,
    pacer: Pacer,
    closed: Arc<Mutex<Vec<ClosedChannel>>>,
}

impl ChannelTask {
    async fn run(self, mut events: mpsc::UnboundedReceiver<ChannelEvent>) {
        let ChannelTask { server, channel, pacer, closed } = &self;
        let topic = channel.topic();
        let sender = pacer.sender();
        while let Some(event) = events.recv().await {
            let (msg, size) = match event {
                ChannelEvent::In { message, size } => (message, size),
                ChannelEvent::Closed(reason) => {
                    closed.lock().unwrap().push((topic.to_owned(), channel.join_ref().cloned(), reason));
                    return;
                }
            };
            let r#ref = msg.r#ref.as_ref();
            match (msg.event, &msg.payload) {
                (Event::Leave, _) => {
                    let _ = channel.reply(sender, r#ref, Status::Ok, Body::Json(b"{}"));
                    channel.close(sender);
                    return;
                }
                (Event::Custom(event), Payload::Binary(bytes)) if event == "echo" => {
                    let _ = channel.reply(sender, r#ref, Status::Ok, Body::Binary(bytes));
                }
                (Event::Custom(event), Payload::Json(payload)) => {
                    let body = serde_json::to_vec(payload).unwrap();
                    match event.as_str() {
                        "echo" => {
                            let _ = channel.reply(sender, r#ref, Status::Ok, Body::Json(&body));
                        }
                        // A binary reply to a text push, whose refs may be numbers.
                        "echo_binary" => {
                            let _ = channel.reply(sender, r#ref, Status::Ok, Body::Binary(b"\x00\x01\x02\x03\xfe\xff"));
                        }
                        "shout" => pacer.broadcast(server, topic, "shout", Body::Json(&body), None).await,
                        "shout_from" => {
                            pacer.broadcast(server, topic, "shout", Body::Json(&body), Some(channel.conn_id())).await;
                            let _ = channel.reply(sender, r#ref, Status::Ok, Body::Json(b"{}"));
                        }
                        _ => {}
                    }
                }
                _ => {}
            }
            if !topic.starts_with("room:stuck") {
                channel.handled(size);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------------------

/// A WebSocket client of one serializer.
pub struct Client {
    pub ws: Ws,
    pub serializer: Serializer,
    /// The `user_id` connect param, as the JSON the join reply carries.
    user_id: String,
}

impl Client {
    pub fn new(ws: Ws, serializer: Serializer, params: &str) -> Client {
        let user_id = query_param(params, "user_id");
        Client { ws, serializer, user_id: serde_json::to_string(&user_id).unwrap() }
    }

    /// Sends a client message written as a 2.0.0 array, in this client's serializer.
    pub async fn send(&mut self, v2_frame: &str) {
        let text = client_frame(self.serializer, v2_frame);
        self.send_message(Message::text(text)).await;
    }

    pub async fn send_message(&mut self, message: Message) {
        self.ws.send(message).await.expect("send");
    }

    /// The next frame from the server.
    pub async fn recv(&mut self) -> Message {
        match tokio::time::timeout(FRAME_TIMEOUT, self.ws.next()).await {
            Ok(Some(Ok(message))) => message,
            Ok(Some(Err(error))) => panic!("read failed: {error}"),
            Ok(None) => panic!("the connection ended"),
            Err(_) => panic!("no frame within {FRAME_TIMEOUT:?}"),
        }
    }

    pub async fn recv_text(&mut self) -> String {
        match self.recv().await {
            Message::Text(text) => text.as_str().to_owned(),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    /// Expects a server message written as a 2.0.0 array, in this client's serializer.
    pub async fn expect(&mut self, v2_frame: &str) {
        let expected = server_frame(self.serializer, v2_frame);
        assert_eq!(self.recv_text().await, expected, "{:?}", self.serializer);
    }

    /// Expects a close frame with `code`; returns its reason.
    pub async fn expect_close(&mut self, code: u16) -> String {
        match self.recv().await {
            Message::Close(Some(frame)) => {
                assert_eq!(u16::from(frame.code), code, "close reason: {}", frame.reason);
                frame.reason.as_str().to_owned()
            }
            other => panic!("expected a close frame with code {code}, got {other:?}"),
        }
    }

    /// Reads until the connection ends; returns how many data frames came and whether a close frame did.
    pub async fn drain(&mut self) -> (usize, bool) {
        let (mut frames, mut closed) = (0, false);
        loop {
            match tokio::time::timeout(FRAME_TIMEOUT, self.ws.next()).await.expect("the connection ends") {
                Some(Ok(Message::Close(_))) => closed = true,
                Some(Ok(_)) => frames += 1,
                Some(Err(_)) | None => return (frames, closed),
            }
        }
    }

    /// Joins `topic` with `join_ref` (also the join's `ref`) and expects the ok reply.
    pub async fn join(&mut self, join_ref: &str, topic: &str) {
        self.send(&format!(r#"["{join_ref}","{join_ref}","{topic}","phx_join",{{}}]"#)).await;
        let user_id = &self.user_id;
        self.expect(&format!(
            r#"["{join_ref}","{join_ref}","{topic}","phx_reply",{{"response":{{"joined":"{topic}","user_id":{user_id}}},"status":"ok"}}]"#
        ))
        .await;
    }

    /// A heartbeat and its reply. As replies keep the order of requests, it also proves
    /// that the server handled every earlier message and queued nothing before the reply.
    pub async fn heartbeat(&mut self, r#ref: &str) {
        self.send(&format!(r#"[null,"{ref}","phoenix","heartbeat",{{}}]"#)).await;
        self.expect(&format!(r#"[null,"{ref}","phoenix","phx_reply",{{"response":{{}},"status":"ok"}}]"#)).await;
    }
}

pub fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').filter_map(|pair| pair.split_once('=')).find(|(k, _)| *k == name).map(|(_, v)| v.to_owned())
}

fn fields(v2_frame: &str) -> [Value; 5] {
    let fields: Vec<Value> = serde_json::from_str(v2_frame).expect("a 2.0.0 frame");
    fields.try_into().expect("5 elements")
}

/// A client message in `serializer`: 1.0.0 clients send `{"topic","event","payload","ref","join_ref"}`.
/// A whole masked client frame (RFC 6455 §5.3): `first` is the first byte (FIN and the
/// opcode: 0x81 text, 0x88 close), `payload` at most 125 bytes (one length byte).
pub fn masked_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() <= 125, "one length byte");
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut frame = vec![first, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, byte)| byte ^ mask[i % 4]));
    frame
}

pub fn client_frame(serializer: Serializer, v2_frame: &str) -> String {
    match serializer {
        Serializer::V2 => v2_frame.to_owned(),
        Serializer::V1 => {
            let [join_ref, r#ref, topic, event, payload] = fields(v2_frame);
            format!(r#"{{"topic":{topic},"event":{event},"payload":{payload},"ref":{ref},"join_ref":{join_ref}}}"#)
        }
    }
}

/// A server message in `serializer`: 1.0.0 servers send `{"event","payload","ref","topic"}`, no join_ref.
pub fn server_frame(serializer: Serializer, v2_frame: &str) -> String {
    match serializer {
        Serializer::V2 => v2_frame.to_owned(),
        Serializer::V1 => {
            let [_join_ref, r#ref, topic, event, payload] = fields(v2_frame);
            format!(r#"{{"event":{event},"payload":{payload},"ref":{ref},"topic":{topic}}}"#)
        }
    }
}
