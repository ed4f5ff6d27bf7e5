//! The fan-out of broadcasts: each message is encoded at most once per serializer, and
//! every target gets clones of the same [`Bytes`] (a reference count, no copy).
//!
//! Pure: it runs on a [`Target`] snapshot of the registry, and queues through the
//! [`Subscriber`] trait, so it is tested below without sockets. The engine's outbound
//! worker (`server::outbound`) is its one caller, one fan-out after the other, so every
//! subscriber sees a topic's broadcasts in the same order.
//!
//! Several messages to one topic go over the targets once: each target gets all of its
//! frames with one [`Subscriber::send_all`] (one lock, one cache miss) instead of one
//! push per message. The worker groups consecutive broadcasts of one sender to a topic
//! this way (a `blast` is 1,000 of them).

use bytes::Bytes;

use crate::protocol::{Body, Outgoing, Serializer};
use crate::registry::{Subscriber, Target};
use crate::websocket::frame;

/// One message of a fan-out.
#[derive(Debug, Clone, Copy)]
pub struct Broadcast<'a> {
    /// The event name.
    pub event: &'a str,
    /// The payload.
    pub body: Body<'a>,
    /// A subscriber that does not get it (`broadcast_from`).
    pub exclude: Option<u64>,
}

/// What a fan-out did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// Frames queued to subscribers.
    pub queued: usize,
    /// Subscribers that could not take their frames (dropped for not reading) or were gone.
    pub dropped: usize,
}

/// Queues `messages`, broadcasts to `topic`, to `targets`, in order. A target gets no
/// frame for a message that excludes it or whose event it intercepts, nor for a body its
/// serializer cannot carry (binary for vsn 1.0.0).
pub fn fan_out<S: Subscriber>(topic: &str, messages: &[Broadcast<'_>], targets: &[Target<S>]) -> Delivery {
    let mut delivery = Delivery::default();
    if messages.is_empty() {
        return delivery;
    }
    // Every target gets every frame unless some message excludes or some target intercepts.
    let uniform = messages.iter().all(|m| m.exclude.is_none()) && targets.iter().all(|t| t.intercepts.is_empty());
    let mut encoded: [Option<Vec<Option<Bytes>>>; 2] = [None, None];
    let mut uniform_frames: [Option<Vec<Bytes>>; 2] = [None, None];
    let mut filtered = Vec::new();
    for target in targets {
        let subscriber = &target.subscriber;
        let serializer = subscriber.serializer();
        let frames = encoded[serializer.index()]
            .get_or_insert_with(|| messages.iter().map(|m| encode(serializer, topic, m)).collect());
        let batch: &[Bytes] = if uniform {
            uniform_frames[serializer.index()].get_or_insert_with(|| frames.iter().flatten().cloned().collect())
        } else {
            filtered.clear();
            for (message, frame) in messages.iter().zip(frames.iter()) {
                let skip = message.exclude == Some(subscriber.id()) || target.intercepts.iter().any(|e| e == message.event);
                if let (false, Some(frame)) = (skip, frame) {
                    filtered.push(frame.clone());
                }
            }
            &filtered
        };
        if batch.is_empty() {
            continue;
        }
        if subscriber.send_all(batch) {
            delivery.queued += batch.len();
        } else {
            delivery.dropped += 1;
        }
    }
    delivery
}

fn encode(serializer: Serializer, topic: &str, message: &Broadcast<'_>) -> Option<Bytes> {
    let outgoing = Outgoing::broadcast(topic, message.event, message.body);
    match frame::try_encode(|out| serializer.encode(&outgoing, out)) {
        Ok(frame) => Some(frame),
        Err(error) => {
            tracing::debug!(%error, topic, "broadcast not sent to {serializer:?} subscribers");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A subscriber that records the frames it is given, or refuses them when full.
    #[derive(Debug)]
    struct Recorder {
        id: u64,
        serializer: Serializer,
        full: bool,
        frames: Mutex<Vec<Bytes>>,
    }

    impl Subscriber for Recorder {
        fn id(&self) -> u64 {
            self.id
        }
        fn serializer(&self) -> Serializer {
            self.serializer
        }
        fn send_all(&self, frames: &[Bytes]) -> bool {
            if !self.full {
                self.frames.lock().unwrap().extend_from_slice(frames);
            }
            !self.full
        }
    }

    fn target(id: u64, serializer: Serializer, intercepts: &[&str]) -> Target<Recorder> {
        let subscriber = Arc::new(Recorder { id, serializer, full: false, frames: Mutex::default() });
        Target { subscriber, intercepts: intercepts.iter().map(|e| e.to_string()).collect::<Vec<_>>().into() }
    }

    /// The payloads of a subscriber's text frames (a server frame's header is 2 bytes here).
    fn received(target: &Target<Recorder>) -> Vec<String> {
        let frames = target.subscriber.frames.lock().unwrap();
        frames.iter().map(|f| String::from_utf8_lossy(&f[2..]).into_owned()).collect()
    }

    #[test]
    fn encodes_once_per_serializer_and_shares_the_bytes() {
        let targets = [target(1, Serializer::V2, &[]), target(2, Serializer::V2, &[]), target(3, Serializer::V1, &[])];
        let message = Broadcast { event: "shout", body: Body::Json(br#"{"a":1}"#), exclude: None };
        assert_eq!(fan_out("room:lobby", &[message], &targets), Delivery { queued: 3, dropped: 0 });
        let (a, b) = (targets[0].subscriber.frames.lock().unwrap()[0].clone(), targets[1].subscriber.frames.lock().unwrap()[0].clone());
        assert_eq!(a.as_ptr(), b.as_ptr(), "one encoding, shared");
        assert_eq!(received(&targets[0]), [r#"[null,null,"room:lobby","shout",{"a":1}]"#]);
        assert_eq!(received(&targets[2]), [r#"{"event":"shout","payload":{"a":1},"ref":null,"topic":"room:lobby"}"#]);
    }

    #[test]
    fn grouped_messages_keep_order_exclusions_and_interceptions() {
        let targets = [target(1, Serializer::V2, &[]), target(2, Serializer::V1, &["secret"])];
        let messages = [
            Broadcast { event: "a", body: Body::Json(br#"{"n":1}"#), exclude: None },
            Broadcast { event: "secret", body: Body::Json(br#"{"n":2}"#), exclude: None },
            Broadcast { event: "b", body: Body::Json(br#"{"n":3}"#), exclude: Some(1) },
            Broadcast { event: "c", body: Body::Binary(b"\x01"), exclude: None },
        ];
        // 1 (vsn 2.0.0): a, secret, c (b excluded); 2 (vsn 1.0.0): a, b (secret intercepted, binary not carried).
        assert_eq!(fan_out("room:g", &messages, &targets), Delivery { queued: 5, dropped: 0 });
        let first = targets[0].subscriber.frames.lock().unwrap();
        assert_eq!(&first[2][..], b"\x82\x0b\x02\x06\x01room:gc\x01", "the binary broadcast, framed");
        drop(first);
        assert_eq!(received(&targets[0])[..2], [r#"[null,null,"room:g","a",{"n":1}]"#, r#"[null,null,"room:g","secret",{"n":2}]"#]);
        assert_eq!(
            received(&targets[1]),
            [r#"{"event":"a","payload":{"n":1},"ref":null,"topic":"room:g"}"#, r#"{"event":"b","payload":{"n":3},"ref":null,"topic":"room:g"}"#]
        );
    }

    #[test]
    fn a_subscriber_that_cannot_take_its_frames_is_counted_and_the_others_go_on() {
        let full = Target {
            subscriber: Arc::new(Recorder { id: 1, serializer: Serializer::V2, full: true, frames: Mutex::default() }),
            intercepts: Arc::new([]),
        };
        let targets = [full, target(2, Serializer::V2, &[])];
        let message = Broadcast { event: "e", body: Body::Json(b"{}"), exclude: None };
        assert_eq!(fan_out("t", &[message, message], &targets), Delivery { queued: 2, dropped: 1 });
        assert_eq!(received(&targets[1]).len(), 2);
    }

    #[test]
    fn nothing_to_nobody() {
        let message = Broadcast { event: "e", body: Body::Json(b"{}"), exclude: None };
        assert_eq!(fan_out::<Recorder>("t", &[message], &[]), Delivery::default());
    }
}
