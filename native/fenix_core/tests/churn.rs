//! Connection churn: waves of connections that join and then die abruptly (a RST, a FIN
//! in the middle of a frame, a RST after half a push) while healthy subscribers get a
//! stream of broadcasts. The healthy subscribers must get every broadcast, in order, and
//! once the churn is over the server must hold exactly what it held before: the same
//! tracked connections, no subscriber left on the dying topic, every dying channel told
//! that its connection is gone, and the same open descriptors.
//!
//! The size is a test's (waves of 150), not the benchmark's (`fenix-loadgen churn`,
//! waves of 2,000); no timing is asserted.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{eventually, Client, Pacer, TestServer, FRAME_TIMEOUT};
use fenix_core::protocol::{Body, Serializer};
use futures_util::future::join_all;
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_tungstenite::MaybeTlsStream;

const HEALTHY: usize = 20;
const WAVES: usize = 3;
const WAVE: usize = 150;
const TOPIC: &str = "room:churn";
const DYING: &str = "room:churn-dying";

#[derive(Clone, Copy, Debug)]
enum Death {
    Rst,
    FinMidFrame,
    RstMidPush,
}

const DEATHS: [Death; 3] = [Death::Rst, Death::FinMidFrame, Death::RstMidPush];

/// Descriptors open in this process (the server's and the clients' both).
fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").expect("/proc/self/fd").count()
}

/// The first half of a masked client frame of a push on the dying topic.
fn half_push() -> Vec<u8> {
    let mut frame = common::masked_frame(0x81, format!(r#"["1","2","{DYING}","echo",{{"k":1}}]"#).as_bytes());
    frame.truncate(frame.len() / 2);
    frame
}

/// Connects, joins the dying topic, and hands back the bare TCP stream.
async fn joined_dying(t: &TestServer, i: usize) -> TcpStream {
    let mut client = t.connect(Serializer::V2, &format!("user_id=dying{i}")).await;
    client.join("1", DYING).await;
    match client.ws.into_inner() {
        MaybeTlsStream::Plain(tcp) => tcp,
        _ => unreachable!("ws:// is plain TCP"),
    }
}

async fn die(mut tcp: TcpStream, death: Death) {
    if matches!(death, Death::FinMidFrame | Death::RstMidPush) {
        tcp.write_all(&half_push()).await.expect("half a frame written");
    }
    match death {
        Death::FinMidFrame => tcp.shutdown().await.expect("FIN"),
        Death::Rst | Death::RstMidPush => socket_reset_on_close(&tcp),
    }
    drop(tcp);
}

/// `SO_LINGER` 0: closing sends a RST.
fn socket_reset_on_close(tcp: &TcpStream) {
    tcp.set_zero_linger().expect("SO_LINGER");
}

/// Reads `shout`s until the one marked last; returns their `seq`s in arrival order, and
/// the client, still connected.
async fn receive_until_last(mut client: Client) -> (Vec<u64>, Client) {
    let mut seqs = Vec::new();
    loop {
        let frame: Value = serde_json::from_str(&client.recv_text().await).unwrap();
        if frame[3] != "shout" {
            continue;
        }
        seqs.push(frame[4]["seq"].as_u64().unwrap());
        if frame[4]["last"] == true {
            return (seqs, client);
        }
    }
}

/// On one runtime, then with new connections served by an intake runtime, as Fenix
/// runs: there the churned connections live and die on the intake (younger than
/// `young_for`), and the healthy ones moved to the main runtime before the churn. One
/// test, one server after the other: the descriptors counted are the whole process's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_subscribers_get_every_broadcast_through_waves_of_abrupt_deaths_and_nothing_is_left() {
    churn(TestServer::start(), 0).await;
    churn(TestServer::with_intake(|config| config.young_for = Duration::from_millis(100)), HEALTHY as u64).await;
}

/// `promoted`: the sessions that move to the main runtime (the healthy ones, or none).
async fn churn(t: TestServer, promoted: u64) {
    let t = Arc::new(t);
    let mut healthy = Vec::new();
    for i in 0..HEALTHY {
        let mut client = t.connect(Serializer::V2, &format!("user_id=h{i}")).await;
        client.join("1", TOPIC).await;
        healthy.push(client);
    }
    let receivers: Vec<_> = healthy.into_iter().map(|c| tokio::spawn(receive_until_last(c))).collect();
    eventually("the healthy sessions moved", || t.server.sessions_promoted() == promoted).await;
    let (connections, descriptors) = (t.server.connection_count(), open_descriptors());
    assert_eq!(connections, HEALTHY);

    // Broadcasts all through the churn, and one marked last after it.
    let churning = Arc::new(AtomicBool::new(true));
    let during = Arc::new(AtomicU64::new(0));
    let broadcaster = {
        let (t, churning, during) = (Arc::clone(&t), Arc::clone(&churning), Arc::clone(&during));
        tokio::spawn(async move {
            let pacer = Pacer::new();
            let mut seq = 0;
            loop {
                seq += 1;
                let last = !churning.load(Ordering::Acquire);
                let body = format!(r#"{{"seq":{seq},"last":{last}}}"#);
                pacer.broadcast(&t.server, TOPIC, "shout", Body::Json(body.as_bytes()), None).await;
                if last {
                    return seq;
                }
                during.store(seq, Ordering::Release);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };

    for wave in 0..WAVES {
        let streams = join_all((0..WAVE).map(|i| joined_dying(&t, wave * WAVE + i))).await;
        assert_eq!(t.registry().subscriber_count(DYING), WAVE, "wave {wave} joined");
        join_all(streams.into_iter().enumerate().map(|(i, tcp)| die(tcp, DEATHS[i % 3]))).await;
    }
    churning.store(false, Ordering::Release);
    let sent = broadcaster.await.unwrap();
    assert!(during.load(Ordering::Acquire) > 0, "broadcasts went out during the churn");

    let want: Vec<u64> = (1..=sent).collect();
    let mut healthy = Vec::new();
    for r in receivers {
        let (got, client) = tokio::time::timeout(FRAME_TIMEOUT * 4, r).await.expect("every healthy subscriber finishes").unwrap();
        assert_eq!(got, want, "every broadcast, once, in order");
        healthy.push(client);
    }

    eventually("the churned connections are untracked", || t.server.connection_count() == connections).await;
    eventually("no subscriber is left on the dying topic", || t.registry().subscriber_count(DYING) == 0).await;
    eventually("every dying channel was told", || {
        t.app.closed_channels().iter().filter(|(topic, _, _)| topic == DYING).count() == WAVES * WAVE
    })
    .await;
    eventually("the churned descriptors are closed", || open_descriptors() == descriptors).await;
    assert_eq!(t.registry().subscriber_count(TOPIC), HEALTHY, "the healthy subscribers are still there");
    for (i, client) in healthy.iter_mut().enumerate() {
        client.heartbeat(&format!("hb{i}")).await;
    }
}
