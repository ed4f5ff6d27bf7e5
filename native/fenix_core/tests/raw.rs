//! Raw connections (a socket of `SocketKind::Raw`): whole messages to one transport,
//! inbound credit, pushes and closes through the outbox, and what the transport is told
//! when the connection ends. The transport here is a plain-Rust task fed by its sink,
//! as a transport process is in Fenix; the client is tokio-tungstenite.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Pacer, FRAME_TIMEOUT};
use fenix_core::server::{Config, Conn, Server, SocketConfig, SocketKind, RawTransport};
use fenix_core::websocket::CloseCode;
use fenix_core::{
    ConnectRequest, ControlKind, DataKind, Handler, JoinRequest, TransportClosed, TransportEvent, TransportSink,
    TransportSinkRef,
};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

/// What a transport was told, with the bytes copied out.
#[derive(Debug, PartialEq, Eq)]
enum Told {
    Message(DataKind, Vec<u8>),
    Control(ControlKind, Vec<u8>),
    Closed(TransportClosed),
}

#[derive(Debug)]
struct Forward(mpsc::UnboundedSender<Told>);

impl TransportSink for Forward {
    fn deliver(&self, event: TransportEvent<'_>) {
        let told = match event {
            TransportEvent::Message(kind, data) => Told::Message(kind, data.to_vec()),
            TransportEvent::Control(kind, payload) => Told::Control(kind, payload.to_vec()),
            TransportEvent::Closed(why) => Told::Closed(why),
        };
        let _ = self.0.send(told);
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// An accepted connection's transport and what it is told.
type Accepted = (Arc<RawTransport>, mpsc::UnboundedReceiver<Told>);

/// Accepts every connection as raw, handing the test each transport and its events.
#[derive(Default)]
struct Accept {
    accepted: Mutex<Option<mpsc::UnboundedSender<Accepted>>>,
}

impl Handler for Accept {
    fn connect(&self, conn: &Arc<Conn>, _request: ConnectRequest) {
        let (events, told) = mpsc::unbounded_channel();
        let sink = |_: &Arc<RawTransport>| -> TransportSinkRef { Arc::new(Forward(events)) };
        let transport = conn.accept_transport(sink, true).expect("accepted in time");
        let accepted = self.accepted.lock().unwrap();
        let _ = accepted.as_ref().expect("a test listens").send((transport, told));
    }

    fn join(&self, _conn: &Arc<Conn>, _request: JoinRequest) {
        unreachable!("raw connections never join");
    }
}

struct Raw {
    server: Server,
    accepted: mpsc::UnboundedReceiver<Accepted>,
}

impl Raw {
    fn start(configure: impl FnOnce(&mut SocketConfig)) -> Raw {
        let mut socket = SocketConfig::new("/echo");
        socket.kind = SocketKind::Raw;
        configure(&mut socket);
        let config = Config { addr: Some(SocketAddr::from(([127, 0, 0, 1], 0))), sockets: vec![socket], ..Config::default() };
        let handler = Arc::new(Accept::default());
        let (tx, accepted) = mpsc::unbounded_channel();
        *handler.accepted.lock().unwrap() = Some(tx);
        let server = Server::start(&tokio::runtime::Handle::current(), config, handler).expect("server starts");
        Raw { server, accepted }
    }

    /// Connects (any `vsn`, or none: a raw socket does not read it); returns the client,
    /// the transport and what it is told.
    async fn connect(&mut self, query: &str) -> (common::Ws, Arc<RawTransport>, mpsc::UnboundedReceiver<Told>) {
        let url = format!("ws://{}/echo/websocket?{query}", self.server.local_addr());
        let (ws, _) = tokio::time::timeout(FRAME_TIMEOUT, tokio_tungstenite::connect_async(url)).await.unwrap().unwrap();
        let (transport, told) = tokio::time::timeout(FRAME_TIMEOUT, self.accepted.recv()).await.unwrap().unwrap();
        (ws, transport, told)
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        self.server.stop();
    }
}

async fn next_told(told: &mut mpsc::UnboundedReceiver<Told>) -> Told {
    tokio::time::timeout(FRAME_TIMEOUT, told.recv()).await.expect("told in time").expect("sink alive")
}

async fn next_message(ws: &mut common::Ws) -> Message {
    tokio::time::timeout(FRAME_TIMEOUT, ws.next()).await.expect("a frame in time").expect("open").expect("no error")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_messages_reach_the_transport_and_its_pushes_the_client() {
    let mut raw = Raw::start(|_| {});
    let (mut ws, transport, mut told) = raw.connect("vsn=9.9.9").await;
    let pacer = Pacer::new();

    ws.send(Message::text("héllo")).await.unwrap();
    ws.send(Message::binary(vec![0, 255])).await.unwrap();
    assert_eq!(next_told(&mut told).await, Told::Message(DataKind::Text, "héllo".as_bytes().to_vec()));
    assert_eq!(next_told(&mut told).await, Told::Message(DataKind::Binary, vec![0, 255]));

    let _ = transport.push(pacer.sender(), DataKind::Text, "back".as_bytes()).unwrap();
    let _ = transport.push(pacer.sender(), DataKind::Binary, &[1, 2, 3]).unwrap();
    assert_eq!(next_message(&mut ws).await, Message::text("back"));
    assert_eq!(next_message(&mut ws).await, Message::binary(vec![1, 2, 3]));

    // Pings are answered by the engine, and told to a transport that asked for them.
    ws.send(Message::Ping(b"p".to_vec().into())).await.unwrap();
    assert_eq!(next_message(&mut ws).await, Message::Pong(b"p".to_vec().into()));
    assert_eq!(next_told(&mut told).await, Told::Control(ControlKind::Ping, b"p".to_vec()));

    ws.close(Some(CloseFrame { code: WsCloseCode::from(4000), reason: "".into() })).await.unwrap();
    assert_eq!(next_told(&mut told).await, Told::Closed(TransportClosed::Closed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transport_that_handles_nothing_is_handed_no_more_than_its_credit() {
    let mut raw = Raw::start(|socket| socket.max_unhandled_messages = 4);
    let (mut ws, transport, mut told) = raw.connect("").await;
    for i in 0..40 {
        ws.send(Message::text(format!("m{i}"))).await.unwrap();
    }
    let mut handed = Vec::new();
    for _ in 0..4 {
        handed.push(next_told(&mut told).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(told.try_recv().is_err(), "out of credit: the reader stops");

    // Handling gives the credit back: the rest arrives, in order.
    let mut handed = handed.into_iter();
    for i in 0..40 {
        let message = match handed.next() {
            Some(message) => message,
            None => next_told(&mut told).await,
        };
        assert_eq!(message, Told::Message(DataKind::Text, format!("m{i}").into_bytes()));
        transport.handled(format!("m{i}").len());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_transport_closes_after_what_it_sent_and_is_told_shutdown() {
    let mut raw = Raw::start(|_| {});
    let (mut ws, transport, mut told) = raw.connect("").await;
    let pacer = Pacer::new();
    let _ = transport.push(pacer.sender(), DataKind::Text, b"last").unwrap();
    let _ = transport.close(pacer.sender(), CloseCode::Normal);
    assert_eq!(next_message(&mut ws).await, Message::text("last"));
    let Message::Close(Some(close)) = next_message(&mut ws).await else { panic!("a close frame") };
    assert_eq!(u16::from(close.code), 1000);
    assert_eq!(next_told(&mut told).await, Told::Closed(TransportClosed::Shutdown));
    assert!(transport.push(pacer.sender(), DataKind::Text, b"late").is_err(), "closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transport_that_dies_closes_its_connection_with_1011() {
    let mut raw = Raw::start(|_| {});
    let (mut ws, transport, _told) = raw.connect("").await;
    transport.crashed(Pacer::new().sender());
    let Message::Close(Some(close)) = next_message(&mut ws).await else { panic!("a close frame") };
    assert_eq!((u16::from(close.code), close.reason.as_str()), (1011, "transport process exited"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_that_is_not_utf8_closes_1007_and_the_transport_is_told() {
    let mut raw = Raw::start(|_| {});
    let (mut ws, _transport, mut told) = raw.connect("").await;
    // tungstenite only sends valid text: a hand-made frame carries the bad bytes.
    let frame = tokio_tungstenite::tungstenite::protocol::frame::Frame::message(
        vec![0xc3, 0x28],
        tokio_tungstenite::tungstenite::protocol::frame::coding::OpCode::Data(
            tokio_tungstenite::tungstenite::protocol::frame::coding::Data::Text,
        ),
        true,
    );
    ws.send(Message::Frame(frame)).await.unwrap();
    let Message::Close(Some(close)) = next_message(&mut ws).await else { panic!("a close frame") };
    assert_eq!(u16::from(close.code), 1007);
    assert_eq!(next_told(&mut told).await, Told::Closed(TransportClosed::Error(CloseCode::InvalidPayload)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_client_is_closed_and_the_transport_told_timeout() {
    let mut raw = Raw::start(|socket| socket.timeout = Duration::from_millis(200));
    let (mut ws, _transport, mut told) = raw.connect("").await;
    let Message::Close(Some(close)) = next_message(&mut ws).await else { panic!("a close frame") };
    assert_eq!(u16::from(close.code), 1002);
    assert_eq!(next_told(&mut told).await, Told::Closed(TransportClosed::Timeout));
}
