//! The channel-slot rules of a connection, as Phoenix 1.8's socket applies them, as a
//! pure state machine: an event goes in, the action to carry out comes back. No I/O,
//! no locks: [`Conn`](super::Conn) holds the machine under its lock and carries the
//! actions out.
//!
//! The rules (each has its unit test below):
//! - a `phx_join` of a topic not joined asks the application ([`Action::Join`]); the
//!   slot is `Joining` until it answers, and messages for the topic are held meanwhile;
//! - at most `max_channels` topics: a further join is answered
//!   `{"reason":"too many channels joined"}`;
//! - a `phx_join` of a joined topic replaces the channel: the old one is stopped first
//!   ([`Action::Replace`]), the new join is asked for, and once it is answered its
//!   reply goes out, then `phx_close` for the old `join_ref` (Phoenix pushes that
//!   close right after the new join's reply);
//! - a `phx_join` while the topic's first join is still being answered waits like any
//!   held message: the first join gets its answer, then the second replaces it, as in
//!   Phoenix, whose socket answers joins one at a time;
//! - a message carrying another `join_ref` than the topic's current one is dropped; a
//!   null `join_ref` is accepted, and so is any on a channel joined without one (as
//!   Phoenix does "to handle v1 protocol"). Refs are compared as JSON values: `1` is
//!   not `"1"` (see [`ClientRef`]);
//! - a message for a topic not joined gets `unmatched topic`; a `phx_leave` gets `ok`;
//! - heartbeats on topic `phoenix` are answered `ok` at once.
//!
//! When a join is answered, the messages held meanwhile come back
//! ([`Answered::held`]) for the caller to run through [`Slots::on_message`] again,
//! in order: they then reach the new channel, or get the answers for a topic not
//! joined, or (a held `phx_join`) replace the channel.

use crate::error::CapacityError;
use crate::protocol::{ClientRef, Event, Message, Status, HEARTBEAT_TOPIC};

use super::conn::JoinError;

/// How many client messages are held per topic while its join is answered; a client
/// that sends more is closed (1008). The phoenix client sends nothing before the reply.
pub(crate) const HELD_LIMIT: usize = 64;

pub(crate) const EMPTY: &[u8] = b"{}";
pub(crate) const UNMATCHED_TOPIC: &[u8] = br#"{"reason":"unmatched topic"}"#;
pub(crate) const TOO_MANY_CHANNELS: &[u8] = br#"{"reason":"too many channels joined"}"#;

/// A joined channel, as the machine needs to know it.
pub(crate) trait JoinedChannel: Clone {
    /// The `join_ref` its messages must carry.
    fn join_ref(&self) -> Option<&ClientRef>;
}

/// What to do with an event.
#[derive(Debug)]
pub(crate) enum Action<C> {
    /// Nothing: the message is held, or dropped (stale `join_ref`).
    None,
    /// Answer the client at once.
    Reply(Reply),
    /// Ask the application to join; the topic's slot waits for the answer.
    Join(Message),
    /// Stop `old` (replaced by a new join of its topic), then ask for the new join.
    Replace { old: C, join: Message },
    /// Hand the message, `size` bytes on the wire, to the joined channel.
    Deliver { channel: C, message: Message, size: usize },
}

/// A reply the connection gives itself.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Reply {
    pub(crate) join_ref: Option<ClientRef>,
    pub(crate) r#ref: Option<ClientRef>,
    pub(crate) topic: String,
    pub(crate) status: Status<'static>,
    pub(crate) body: &'static [u8],
}

/// A join answered (accepted or refused).
#[derive(Debug)]
pub(crate) struct Answered {
    /// The `join_ref` of the channel this join replaced: it gets `phx_close` after the reply.
    pub(crate) replaced: Option<Option<ClientRef>>,
    /// What the client sent meanwhile, with sizes, to run through [`Slots::on_message`].
    pub(crate) held: Vec<(Message, usize)>,
}

#[derive(Debug)]
enum Slot<C> {
    /// Boxed: a join is answered within milliseconds, while a joined slot lasts, and every
    /// slot of the vector is as large as its largest variant.
    Joining(Box<Joining>),
    Joined(C),
}

#[derive(Debug)]
struct Joining {
    join_ref: Option<ClientRef>,
    held: Vec<(Message, usize)>,
    replaces: Option<Option<ClientRef>>,
}

impl<C> Slot<C> {
    fn joining(join_ref: Option<ClientRef>, replaces: Option<Option<ClientRef>>) -> Slot<C> {
        Slot::Joining(Box::new(Joining { join_ref, held: Vec::new(), replaces }))
    }
}

/// A connection's channels by topic. Most connections join one or a few topics, so a
/// vector (sized exactly while small) costs far less than a hash map; the cap on
/// channels keeps the scans short.
#[derive(Debug)]
pub(crate) struct Slots<C> {
    slots: Vec<(String, Slot<C>)>,
}

impl<C: JoinedChannel> Slots<C> {
    pub(crate) fn new() -> Slots<C> {
        Slots { slots: Vec::new() }
    }

    /// A message from the client, `size` bytes on the wire, on a connection that may
    /// join `max_channels` topics. An error means the client broke a limit and the
    /// connection must be closed.
    pub(crate) fn on_message(&mut self, msg: Message, size: usize, max_channels: usize) -> Result<Action<C>, CapacityError> {
        if msg.event == Event::Heartbeat && msg.topic == HEARTBEAT_TOPIC {
            return Ok(Action::Reply(reply(None, &msg, Status::Ok, EMPTY)));
        }
        let Some(index) = self.position(&msg.topic) else {
            return Ok(self.not_joined(msg, max_channels));
        };
        match &mut self.slots[index].1 {
            Slot::Joining(joining) => {
                let Joining { join_ref, held, .. } = &mut **joining;
                // A join defines its own join_ref: only other messages can be stale.
                if msg.event != Event::Join && is_stale(&msg, join_ref.as_ref()) {
                    tracing::debug!(topic = msg.topic, "dropped a message with a stale join_ref");
                    return Ok(Action::None);
                }
                if held.len() >= HELD_LIMIT {
                    return Err(CapacityError::HeldMessages(HELD_LIMIT));
                }
                held.push((msg, size));
                Ok(Action::None)
            }
            Slot::Joined(channel) if msg.event == Event::Join => {
                let old = channel.clone();
                let replaces = Some(old.join_ref().cloned());
                self.slots[index].1 = Slot::joining(msg.join_ref.clone(), replaces);
                Ok(Action::Replace { old, join: msg })
            }
            Slot::Joined(channel) if is_stale(&msg, channel.join_ref()) => {
                tracing::debug!(topic = msg.topic, "dropped a message with a stale join_ref");
                Ok(Action::None)
            }
            Slot::Joined(channel) => Ok(Action::Deliver { channel: channel.clone(), message: msg, size }),
        }
    }

    fn not_joined(&mut self, msg: Message, max_channels: usize) -> Action<C> {
        match msg.event {
            Event::Join if self.slots.len() >= max_channels => {
                Action::Reply(reply(msg.join_ref.clone(), &msg, Status::Error, TOO_MANY_CHANNELS))
            }
            Event::Join => {
                let slot = Slot::joining(msg.join_ref.clone(), None);
                self.insert(msg.topic.clone(), slot);
                Action::Join(msg)
            }
            Event::Leave => Action::Reply(reply(msg.join_ref.clone(), &msg, Status::Ok, EMPTY)),
            _ => Action::Reply(reply(None, &msg, Status::Error, UNMATCHED_TOPIC)),
        }
    }

    /// The application accepted the join `join_ref` of `topic`: `channel` is joined.
    pub(crate) fn on_joined(&mut self, topic: &str, join_ref: Option<&ClientRef>, channel: C) -> Result<Answered, JoinError> {
        let index = self.joining(topic, join_ref)?;
        let answered = self.answered(index);
        self.slots[index].1 = Slot::Joined(channel);
        Ok(answered)
    }

    /// The application refused (or crashed in) the join `join_ref` of `topic`.
    pub(crate) fn on_join_failed(&mut self, topic: &str, join_ref: Option<&ClientRef>) -> Result<Answered, JoinError> {
        let index = self.joining(topic, join_ref)?;
        let answered = self.answered(index);
        self.slots.swap_remove(index);
        Ok(answered)
    }

    /// The channel `join_ref` of `topic` ended (closed itself or crashed); returns it,
    /// or `None` when it was not (or no longer) joined.
    pub(crate) fn on_channel_ended(&mut self, topic: &str, join_ref: Option<&ClientRef>) -> Option<C> {
        let index = self.position(topic)?;
        match &self.slots[index].1 {
            Slot::Joined(channel) if channel.join_ref() == join_ref => {}
            _ => return None,
        }
        match self.slots.swap_remove(index).1 {
            Slot::Joined(channel) => Some(channel),
            Slot::Joining(_) => None,
        }
    }

    /// Whether `join_ref` is the joined channel of `topic`.
    pub(crate) fn is_joined(&self, topic: &str, join_ref: Option<&ClientRef>) -> bool {
        self.position(topic).is_some_and(|i| matches!(&self.slots[i].1, Slot::Joined(c) if c.join_ref() == join_ref))
    }

    /// Every joined channel.
    pub(crate) fn joined(&self) -> impl Iterator<Item = &C> {
        self.slots.iter().filter_map(|(_, slot)| match slot {
            Slot::Joined(channel) => Some(channel),
            Slot::Joining(_) => None,
        })
    }

    /// The connection closed: every joined channel, by topic.
    pub(crate) fn take_joined(&mut self) -> Vec<(String, C)> {
        std::mem::take(&mut self.slots)
            .into_iter()
            .filter_map(|(topic, slot)| match slot {
                Slot::Joined(channel) => Some((topic, channel)),
                Slot::Joining(_) => None,
            })
            .collect()
    }

    fn joining(&self, topic: &str, join_ref: Option<&ClientRef>) -> Result<usize, JoinError> {
        let index = self.position(topic).ok_or(JoinError::Stale)?;
        match &self.slots[index].1 {
            Slot::Joining(joining) if joining.join_ref.as_ref() == join_ref => Ok(index),
            _ => Err(JoinError::Stale),
        }
    }

    fn answered(&mut self, index: usize) -> Answered {
        match &mut self.slots[index].1 {
            Slot::Joining(joining) => {
                Answered { replaced: joining.replaces.take(), held: std::mem::take(&mut joining.held) }
            }
            Slot::Joined(_) => Answered { replaced: None, held: Vec::new() },
        }
    }

    fn position(&self, topic: &str) -> Option<usize> {
        self.slots.iter().position(|(t, _)| t == topic)
    }

    fn insert(&mut self, topic: String, slot: Slot<C>) {
        if self.slots.len() < 4 {
            self.slots.reserve_exact(1);
        }
        self.slots.push((topic, slot));
    }
}

/// A message for another join of its topic than the current one. A null `join_ref`, as
/// v1 clients send, is never stale, nor is any on a channel joined without one.
fn is_stale(msg: &Message, current: Option<&ClientRef>) -> bool {
    match (&msg.join_ref, current) {
        (Some(sent), Some(current)) => sent != current,
        _ => false,
    }
}

fn reply(join_ref: Option<ClientRef>, msg: &Message, status: Status<'static>, body: &'static [u8]) -> Reply {
    Reply { join_ref, r#ref: msg.r#ref.clone(), topic: msg.topic.clone(), status, body }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Serializer;

    /// A joined channel in the tests: its join_ref.
    #[derive(Debug, Clone, PartialEq)]
    struct Ch(Option<ClientRef>);

    impl JoinedChannel for Ch {
        fn join_ref(&self) -> Option<&ClientRef> {
            self.0.as_ref()
        }
    }

    /// A client message, written as the 2.0.0 array the phoenix client sends.
    fn msg(frame: &str) -> Message {
        Serializer::V2.decode_text(frame.as_bytes()).expect("a valid frame")
    }

    const MAX_CHANNELS: usize = 100;

    fn on(slots: &mut Slots<Ch>, frame: &str) -> Action<Ch> {
        slots.on_message(msg(frame), frame.len(), MAX_CHANNELS).expect("within limits")
    }

    fn joined(slots: &mut Slots<Ch>, topic: &str, join_ref: &str) -> Answered {
        let join_ref = ClientRef::from(join_ref);
        slots.on_joined(topic, Some(&join_ref), Ch(Some(join_ref.clone()))).expect("pending")
    }

    fn reply_of(action: Action<Ch>) -> Reply {
        match action {
            Action::Reply(reply) => reply,
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    #[test]
    fn a_join_asks_the_application_and_then_delivers() {
        let mut slots = Slots::new();
        assert!(matches!(on(&mut slots, r#"["1","1","room:a","phx_join",{}]"#), Action::Join(m) if m.topic == "room:a"));
        let answered = joined(&mut slots, "room:a", "1");
        assert!(answered.held.is_empty() && answered.replaced.is_none());
        match on(&mut slots, r#"["1","2","room:a","echo",{"x":1}]"#) {
            Action::Deliver { channel, message, size } => {
                assert_eq!((channel, message.r#ref, size), (Ch(Some("1".into())), Some("2".into()), 33), "size: the frame's 33 bytes");
            }
            other => panic!("expected a delivery, got {other:?}"),
        }
    }

    #[test]
    fn messages_sent_before_the_join_is_answered_are_held_and_come_back_in_order() {
        let mut slots = Slots::new();
        on(&mut slots, r#"["1","1","room:a","phx_join",{}]"#);
        assert!(matches!(on(&mut slots, r#"["1","2","room:a","echo",{}]"#), Action::None));
        assert!(matches!(on(&mut slots, r#"["1","3","room:a","echo",{}]"#), Action::None));
        let refs: Vec<_> = joined(&mut slots, "room:a", "1").held.into_iter().map(|(m, _)| m.r#ref).collect();
        assert_eq!(refs, [Some("2".into()), Some("3".into())]);
    }

    #[test]
    fn more_held_messages_than_the_limit_break_the_connection() {
        let mut slots: Slots<Ch> = Slots::new();
        on(&mut slots, r#"["1","1","room:a","phx_join",{}]"#);
        for _ in 0..HELD_LIMIT {
            on(&mut slots, r#"["1","2","room:a","echo",{}]"#);
        }
        let error = slots.on_message(msg(r#"["1","2","room:a","echo",{}]"#), 1, MAX_CHANNELS).unwrap_err();
        assert_eq!(error, CapacityError::HeldMessages(HELD_LIMIT));
    }

    #[test]
    fn a_duplicate_join_stops_the_old_channel_first_and_closes_its_join_ref_after_the_reply() {
        let mut slots = Slots::new();
        on(&mut slots, r#"["1","1","room:a","phx_join",{}]"#);
        joined(&mut slots, "room:a", "1");
        match on(&mut slots, r#"["5","5","room:a","phx_join",{}]"#) {
            Action::Replace { old, join } => assert_eq!((old, join.join_ref), (Ch(Some("1".into())), Some("5".into()))),
            other => panic!("expected a replacement, got {other:?}"),
        }
        // The old channel is gone at once: a late message of it is stale.
        assert!(matches!(on(&mut slots, r#"["1","6","room:a","echo",{}]"#), Action::None));
        assert_eq!(joined(&mut slots, "room:a", "5").replaced, Some(Some("1".into())));
    }

    #[test]
    fn a_duplicate_join_while_the_first_is_answered_waits_and_the_first_gets_its_answer() {
        let mut slots = Slots::new();
        on(&mut slots, r#"["1","1","room:a","phx_join",{}]"#);
        assert!(matches!(on(&mut slots, r#"["2","2","room:a","phx_join",{}]"#), Action::None), "held");
        // The first join is still the one being answered.
        let answered = joined(&mut slots, "room:a", "1");
        let [(second, size)] = <[_; 1]>::try_from(answered.held).expect("one held join");
        match slots.on_message(second, size, MAX_CHANNELS).unwrap() {
            Action::Replace { old, join } => assert_eq!((old, join.join_ref), (Ch(Some("1".into())), Some("2".into()))),
            other => panic!("expected the second join to replace the first, got {other:?}"),
        }
    }

    #[test]
    fn a_message_with_a_stale_join_ref_is_dropped_and_a_null_join_ref_accepted() {
        let mut slots = Slots::new();
        on(&mut slots, r#"["1","1","room:a","phx_join",{}]"#);
        joined(&mut slots, "room:a", "1");
        assert!(matches!(on(&mut slots, r#"["9","2","room:a","echo",{}]"#), Action::None));
        assert!(matches!(on(&mut slots, r#"[null,"3","room:a","echo",{}]"#), Action::Deliver { .. }));
        assert!(matches!(on(&mut slots, r#"["9","4","room:a","phx_leave",{}]"#), Action::None), "a leave racing a close");
    }

    #[test]
    fn join_refs_are_compared_as_json_values() {
        let mut slots = Slots::new();
        // A client whose refs are numbers (Python, embedded, game engines).
        assert!(matches!(on(&mut slots, r#"[1,1,"room:a","phx_join",{}]"#), Action::Join(_)));
        let one = ClientRef::from_json("1").unwrap();
        slots.on_joined("room:a", one.as_ref(), Ch(one.clone())).expect("pending");
        assert!(matches!(on(&mut slots, r#"[1,2,"room:a","echo",{}]"#), Action::Deliver { .. }));
        for stale in [r#"["1",3,"room:a","echo",{}]"#, r#"[1.0,4,"room:a","echo",{}]"#, r#"[[1],5,"room:a","echo",{}]"#] {
            assert!(matches!(on(&mut slots, stale), Action::None), "{stale} is another join_ref than 1");
        }
        // Objects are equal whatever their key order.
        let mut slots = Slots::new();
        on(&mut slots, r#"[{"a":1,"b":2},1,"room:o","phx_join",{}]"#);
        let object = ClientRef::from_json(r#"{"b":2,"a":1}"#).unwrap();
        slots.on_joined("room:o", object.as_ref(), Ch(object.clone())).expect("the same join_ref");
        assert!(matches!(on(&mut slots, r#"[{"b":2,"a":1},2,"room:o","echo",{}]"#), Action::Deliver { .. }));
    }

    #[test]
    fn a_channel_joined_without_a_join_ref_takes_any() {
        // Phoenix: `existing_join_ref in [join_ref, nil]`, "to handle v1 protocol".
        let mut slots = Slots::new();
        on(&mut slots, r#"[null,0,"room:a","phx_join",{}]"#);
        slots.on_joined("room:a", None, Ch(None)).expect("pending");
        assert!(matches!(on(&mut slots, r#"["7","1","room:a","echo",{}]"#), Action::Deliver { .. }));
    }

    #[test]
    fn a_message_for_a_topic_not_joined_is_unmatched_and_a_leave_is_ok() {
        let mut slots: Slots<Ch> = Slots::new();
        let unmatched = reply_of(on(&mut slots, r#"["1","2","room:x","echo",{}]"#));
        assert_eq!((unmatched.join_ref, unmatched.status, unmatched.body), (None, Status::Error, UNMATCHED_TOPIC));
        let leave = reply_of(on(&mut slots, r#"["1","3","room:x","phx_leave",{}]"#));
        assert_eq!((leave.join_ref, leave.r#ref, leave.status, leave.body), (Some("1".into()), Some("3".into()), Status::Ok, EMPTY));
    }

    #[test]
    fn at_most_max_channels_topics() {
        let mut slots: Slots<Ch> = Slots::new();
        let on = |slots: &mut Slots<Ch>, frame: &str| slots.on_message(msg(frame), frame.len(), 2).expect("within limits");
        on(&mut slots, r#"["1","1","room:a","phx_join",{}]"#);
        on(&mut slots, r#"["2","2","room:b","phx_join",{}]"#);
        let refused = reply_of(on(&mut slots, r#"["3","3","room:c","phx_join",{}]"#));
        assert_eq!((refused.join_ref, refused.status, refused.body), (Some("3".into()), Status::Error, TOO_MANY_CHANNELS));
        // Joining a topic already held again does not count as one more.
        joined(&mut slots, "room:a", "1");
        assert!(matches!(on(&mut slots, r#"["4","4","room:a","phx_join",{}]"#), Action::Replace { .. }));
    }

    #[test]
    fn heartbeats_are_answered_at_once() {
        let mut slots: Slots<Ch> = Slots::new();
        let reply = reply_of(on(&mut slots, r#"[null,"7","phoenix","heartbeat",{}]"#));
        assert_eq!(reply, Reply { join_ref: None, r#ref: Some("7".into()), topic: "phoenix".into(), status: Status::Ok, body: EMPTY });
    }

    #[test]
    fn a_failed_join_frees_the_topic_and_hands_back_what_was_held() {
        let mut slots: Slots<Ch> = Slots::new();
        on(&mut slots, r#"["1","1","room:a","phx_join",{}]"#);
        on(&mut slots, r#"["1","2","room:a","echo",{}]"#);
        let answered = slots.on_join_failed("room:a", Some(&"1".into())).unwrap();
        let [(held, size)] = <[_; 1]>::try_from(answered.held).expect("one held message");
        let reply = reply_of(slots.on_message(held, size, MAX_CHANNELS).unwrap());
        assert_eq!(reply.body, UNMATCHED_TOPIC, "answered as for a topic not joined");
    }

    #[test]
    fn an_answer_for_another_join_is_stale() {
        let mut slots: Slots<Ch> = Slots::new();
        on(&mut slots, r#"["1","1","room:a","phx_join",{}]"#);
        assert_eq!(slots.on_joined("room:a", Some(&"0".into()), Ch(None)).unwrap_err(), JoinError::Stale);
        assert_eq!(slots.on_join_failed("room:b", Some(&"1".into())).unwrap_err(), JoinError::Stale);
    }

    #[test]
    fn an_ended_channel_leaves_its_slot_once() {
        let mut slots = Slots::new();
        on(&mut slots, r#"["1","1","room:a","phx_join",{}]"#);
        joined(&mut slots, "room:a", "1");
        assert!(slots.is_joined("room:a", Some(&"1".into())));
        assert_eq!(slots.on_channel_ended("room:a", Some(&"2".into())), None, "another join's channel");
        assert_eq!(slots.on_channel_ended("room:a", Some(&"1".into())), Some(Ch(Some("1".into()))));
        assert_eq!(slots.on_channel_ended("room:a", Some(&"1".into())), None);
        assert!(!slots.is_joined("room:a", Some(&"1".into())));
    }
}
