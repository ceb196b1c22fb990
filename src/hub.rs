//! The broadcast hub: one place every event goes through, for both
//! protocols.
//!
//! A publisher (`POST /trigger-event`, the ticker, a WebSocket chat message)
//! calls [`Hub::publish`]. The hub gives the event the next id, formats it
//! once for each protocol (an SSE block and a WebSocket text frame), keeps it
//! in a bounded history for clients that come back with `Last-Event-ID`,
//! and hands it on two ways: it puts one shared pointer to it in the queue
//! of every subscriber that has one (a chat connection's writer), and it
//! wakes every reader that takes events by id from the history itself
//! (the SSE fan-out, and a stream that fell behind: see `app/fanout.rs`).
//!
//! Three rules keep one slow client from hurting the rest:
//! - each subscriber's queue is bounded (`--queue` events), and the hub
//!   never waits to put an event in one, so publishing waits for nobody;
//! - a subscriber whose queue is full, or a reader that falls as far
//!   behind, is let go: it has fallen hopelessly behind, and a client can
//!   reconnect with `Last-Event-ID` and get what it missed from the
//!   history, so nothing is lost;
//! - the hub's lock is held only to touch the hub's own data: sockets are
//!   written by the connection threads and the fan-out, never under it.
//!
//! In a cluster (`--broker`, `app/broker.rs`) the ids are handed out by
//! Redis instead, and the broker's reader brings each event in with
//! [`Hub::append`]; if the ids start over there, [`Hub::restart`] starts
//! them over here, and tells every subscriber with a `reset` event.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvError, Sender, TryRecvError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::json;
use crate::sse::format as sse;
use crate::websocket::frame::{self, OpCode};

/// One broadcast event, kept once and shared by every subscriber.
///
/// The data (the JSON text) is stored once. Each protocol's framing is a
/// few bytes around it, made once when the event is published: the SSE
/// lines before it (`id: 7\ndata: `) and after it, and the WebSocket
/// frame header. A connection writes the framing and the shared data side
/// by side, so neither the history nor a subscriber's queue holds a copy.
#[derive(Debug)]
pub struct Event {
    pub id: u64,
    /// The SSE event type (`event:` line), when it is not the default `message`.
    pub name: Option<String>,
    /// The JSON text, the same for both protocols.
    pub data: Arc<str>,
    sse: SseFraming,
    /// The header of one unmasked WebSocket text frame carrying `data`.
    ws_head: Vec<u8>,
}

/// How an event goes on an SSE stream.
#[derive(Debug)]
enum SseFraming {
    /// One-line data: this head, the data, then `sse::EVENT_END`.
    Around(Vec<u8>),
    /// Data with line breaks is split over several `data:` lines, so it is
    /// formatted whole (no JSON this server writes needs this).
    Whole(Vec<u8>),
}

impl Event {
    /// The event on an SSE stream, in the pieces it is written in.
    pub fn sse_parts(&self) -> [&[u8]; 3] {
        match &self.sse {
            SseFraming::Around(head) => [head, self.data.as_bytes(), sse::EVENT_END],
            SseFraming::Whole(block) => [block, &[], &[]],
        }
    }

    /// The event's SSE block in one piece (a copy: for tests and captures).
    pub fn sse_bytes(&self) -> Vec<u8> {
        self.sse_parts().concat()
    }

    /// The WebSocket frame's header; its payload is [`Event::ws_payload`].
    pub fn ws_head(&self) -> &[u8] {
        &self.ws_head
    }

    /// The frame's payload: the shared data itself, not a copy.
    pub fn ws_payload(&self) -> Arc<[u8]> {
        Arc::<[u8]>::from(Arc::clone(&self.data))
    }

    /// The whole WebSocket frame in one piece (a copy: for tests).
    pub fn ws_frame(&self) -> Vec<u8> {
        [&self.ws_head[..], self.data.as_bytes()].concat()
    }
}

/// An event before it has its id: everything that does not depend on
/// the id, made outside the hub's lock.
struct EventBody {
    name: Option<String>,
    data: Arc<str>,
    ws_head: Vec<u8>,
}

impl EventBody {
    fn new(name: Option<&str>, data: &str) -> EventBody {
        let mut ws_head = Vec::with_capacity(frame::MAX_HEADER_LEN);
        frame::encode_header(&mut ws_head, true, OpCode::Text, None, data.len() as u64);
        EventBody {
            name: name.map(str::to_string),
            data: Arc::from(data),
            ws_head,
        }
    }

    fn with_id(self, id: u64) -> Event {
        let name = self.name.as_deref();
        let sse = match sse::event_head(Some(id), name, &self.data) {
            Some(head) => SseFraming::Around(head),
            None => SseFraming::Whole(sse::format_event(Some(id), name, &self.data)),
        };
        Event {
            id,
            name: self.name,
            data: self.data,
            sse,
            ws_head: self.ws_head,
        }
    }
}

/// How a new subscriber joins the stream of events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resume {
    /// No `Last-Event-ID`: live events only.
    Fresh,
    /// Events after the given id were found in the history, and are in
    /// [`Replay::events`] (possibly none).
    From(u64),
    /// Not every event after that id can be replayed; the text says why.
    /// What the history still holds is in [`Replay::events`].
    Reset(String),
}

/// What [`Hub::subscribe`] hands to a connection.
pub struct Subscription {
    /// Membership in the hub; dropping it leaves.
    pub membership: Membership,
    /// Live events, in id order, starting right after the replay.
    pub events: Queue,
    /// Missed events to send first, those the history still holds.
    pub replay: Vec<Arc<Event>>,
    pub resume: Resume,
    /// The newest id at the moment of subscribing (0 before any event).
    pub newest_id: u64,
}

/// A subscriber's place in the hub. Dropping it removes the subscriber and
/// with it the sending end of its queue, so a thread waiting on the queue
/// wakes up at once.
pub struct Membership {
    hub: Arc<Hub>,
    key: u64,
}

impl Drop for Membership {
    /// Leaving is automatic: however a connection thread ends, its
    /// membership is dropped and the hub forgets it.
    fn drop(&mut self) {
        self.hub.state().subscribers.retain(|s| s.key != self.key);
    }
}

struct Subscriber {
    key: u64,
    queue: Sender<Arc<Event>>,
    /// Events in the queue not yet taken out (shared with the [`Queue`]).
    pending: Arc<AtomicUsize>,
}

/// A subscriber's queue of events, bounded by the hub (`--queue`).
///
/// A channel whose memory grows with what is in it, and a count of what is
/// in it: a bounded `sync_channel` would set aside room for the whole limit
/// in every queue, 4 KiB for each of thousands of idle chat connections.
pub struct Queue {
    receiver: Receiver<Arc<Event>>,
    pending: Arc<AtomicUsize>,
}

impl Queue {
    /// The next event, waiting for it; `Err` once the hub let go.
    pub fn recv(&self) -> Result<Arc<Event>, RecvError> {
        let event = self.receiver.recv()?;
        self.pending.fetch_sub(1, Ordering::Relaxed);
        Ok(event)
    }

    /// The next event if one is there.
    pub fn try_recv(&self) -> Result<Arc<Event>, TryRecvError> {
        let event = self.receiver.try_recv()?;
        self.pending.fetch_sub(1, Ordering::Relaxed);
        Ok(event)
    }

    /// Every event, waiting for each, until the hub lets go.
    pub fn iter(&self) -> impl Iterator<Item = Arc<Event>> + '_ {
        std::iter::from_fn(|| self.recv().ok())
    }

    /// The events there now.
    pub fn try_iter(&self) -> impl Iterator<Item = Arc<Event>> + '_ {
        std::iter::from_fn(|| self.try_recv().ok())
    }
}

struct HubState {
    last_id: u64,
    /// The newest events, oldest first: the history for resume, and the
    /// queue that readers (see [`Hub::wait_after`]) take events from.
    history: VecDeque<Arc<Event>>,
    subscribers: Vec<Subscriber>,
    next_key: u64,
    /// Counts the times the ids started over ([`Hub::restart`]): a place
    /// in the stream is an id *in a generation*.
    generation: u64,
    /// The `reset` event of the latest restart, for readers that find
    /// themselves in an older generation.
    reset: Option<Arc<Event>>,
}

/// A reader's place in the stream of events: the newest event it has
/// taken, and the generation that id belongs to. After a restart the same
/// number means another event, so a place from an older generation is
/// not compared by id at all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Place {
    pub generation: u64,
    pub id: u64,
}

pub struct Hub {
    state: Mutex<HubState>,
    /// Told of every new event, for the readers waiting in [`Hub::wait_after`].
    changed: Condvar,
    /// Events a client may resume from (`--history`).
    history_limit: usize,
    /// How far one subscriber or reader may fall behind (`--queue`).
    queue_limit: usize,
    /// Events kept: enough for both of the above.
    keep: usize,
    /// Readers that take events by id from the history instead of a queue
    /// of their own (the SSE streams), for the counts.
    readers: Arc<AtomicUsize>,
    dropped: AtomicU64,
}

/// What the history holds after a given id.
#[derive(Debug)]
pub enum After {
    /// The events after it, in order (none yet, if it is the newest).
    Events(Vec<Arc<Event>>),
    /// Some of them are no longer kept: the reader fell too far behind.
    Missed,
    /// The ids started over since that place (see [`Hub::restart`]): the
    /// reader sends the `reset` event, whose id is its new place, and
    /// goes on from there.
    Restarted { reset: Arc<Event>, place: Place },
}

/// An event that does not follow the newest one ([`Hub::append`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    /// The id that should have come next.
    pub expected: u64,
    pub got: u64,
}

/// A reader of the hub, counted among its subscribers while it lives.
pub struct Reader(Arc<AtomicUsize>);

impl Drop for Reader {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Where a new subscriber starts: see [`Hub::replay_from`].
#[derive(Debug)]
pub struct Replay {
    pub resume: Resume,
    /// Missed events the history still holds, to send first.
    pub events: Vec<Arc<Event>>,
    /// The newest id at that moment (0 before any event).
    pub newest_id: u64,
    /// The generation `newest_id` and the events belong to.
    pub generation: u64,
}

impl Replay {
    /// Where a reader that has written this replay stands.
    pub fn place_after(&self) -> Place {
        let id = self.events.last().map_or(self.newest_id, |e| e.id);
        Place {
            generation: self.generation,
            id,
        }
    }
}

/// What a publish did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    pub id: u64,
    /// Subscribers the event was queued to.
    pub delivered: usize,
}

impl Hub {
    /// `history_limit`: events kept for resume. `queue_limit`: events that
    /// may wait for one subscriber before it is dropped (at least 1).
    pub fn new(history_limit: usize, queue_limit: usize) -> Arc<Hub> {
        let queue_limit = queue_limit.max(1);
        let keep = history_limit.max(queue_limit);
        Arc::new(Hub {
            state: Mutex::new(HubState {
                last_id: 0,
                history: VecDeque::with_capacity(keep.min(4096)),
                subscribers: Vec::new(),
                next_key: 0,
                generation: 0,
                reset: None,
            }),
            changed: Condvar::new(),
            history_limit,
            queue_limit,
            keep,
            readers: Arc::new(AtomicUsize::new(0)),
            dropped: AtomicU64::new(0),
        })
    }

    fn state(&self) -> MutexGuard<'_, HubState> {
        // A panic in another thread while it held the lock leaves the data
        // consistent (every update below is a single step), so carry on.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Broadcasts `data` (a JSON text) as the next event, with an optional
    /// SSE event name. Fails only when the name could break the SSE framing.
    pub fn publish(&self, name: Option<&str>, data: &str) -> Result<Published, sse::FieldError> {
        if let Some(name) = name {
            sse::check_field(name)?;
        }
        // What does not depend on the id is made before taking the lock,
        // so the lock is held as briefly as possible.
        let body = EventBody::new(name, data);
        let state = self.state();
        let id = state.last_id + 1;
        Ok(self.insert_locked(state, id, body))
    }

    /// Adds an event whose id was given elsewhere: by the cluster's log in
    /// Redis, which hands out the ids for every instance (`app/broker.rs`).
    /// An id already here is a duplicate and changes nothing (`Ok(None)`);
    /// one that skips ids is refused, since the history must hold
    /// consecutive ids: the caller decides what the gap means.
    pub fn append(
        &self,
        id: u64,
        name: Option<&str>,
        data: &str,
    ) -> Result<Option<Published>, Gap> {
        let body = EventBody::new(name, data);
        let state = self.state();
        let expected = state.last_id + 1;
        match id {
            _ if id < expected => Ok(None),
            _ if id > expected => Err(Gap { expected, got: id }),
            _ => Ok(Some(self.insert_locked(state, id, body))),
        }
    }

    fn insert_locked(
        &self,
        mut state: MutexGuard<'_, HubState>,
        id: u64,
        body: EventBody,
    ) -> Published {
        let event = Arc::new(body.with_id(id));
        state.last_id = id;
        if state.history.len() == self.keep {
            state.history.pop_front();
        }
        state.history.push_back(Arc::clone(&event));
        let mut delivered = self.readers.load(Ordering::Relaxed);
        let dropped = Self::queue_to_all(&mut state, &event, self.queue_limit, &mut delivered);
        drop(state);
        // One wake-up call for every reader waiting for an event.
        self.changed.notify_all();
        self.dropped.fetch_add(dropped, Ordering::Relaxed);
        Published { id, delivered }
    }

    /// Puts `event` in every subscriber's queue; returns how many were
    /// dropped instead because theirs was full.
    fn queue_to_all(
        state: &mut HubState,
        event: &Arc<Event>,
        limit: usize,
        delivered: &mut usize,
    ) -> u64 {
        let mut dropped = 0;
        state.subscribers.retain(|subscriber| {
            // Full: this subscriber is too far behind. Dropping its sender
            // ends its queue; the connection thread sees that after draining
            // what is queued and closes, and the client can resume by id.
            if subscriber.pending.load(Ordering::Relaxed) >= limit {
                dropped += 1;
                return false;
            }
            subscriber.pending.fetch_add(1, Ordering::Relaxed);
            let sent = subscriber.queue.send(Arc::clone(event)).is_ok();
            *delivered += usize::from(sent);
            sent
        });
        dropped
    }

    /// The ids start over: the history is replaced by `events` (oldest
    /// first, consecutive ids, possibly none) and the newest id becomes
    /// `newest`, which may be lower than before. Used by `app/broker.rs`
    /// when Redis lost its data, or when this instance missed events it
    /// can no longer get.
    ///
    /// Every subscriber is told, with a `reset` event (`why` is its
    /// message) whose `id:` is the new newest id: a chat client gets it in
    /// its queue; a reader, whose place is now in an older generation, gets
    /// [`After::Restarted`] and sends it. A browser that stores the reset's
    /// id resumes in the new sequence, not the old one.
    pub fn restart<'a>(
        &self,
        newest: u64,
        events: impl IntoIterator<Item = (u64, Option<&'a str>, &'a str)>,
        why: &str,
    ) {
        let bodies: Vec<(u64, EventBody)> = events
            .into_iter()
            .map(|(id, name, data)| (id, EventBody::new(name, data)))
            .collect();
        let mut state = self.state();
        state.generation += 1;
        state.history.clear();
        state.last_id = newest;
        if let Some((first, _)) = bodies.first() {
            state.last_id = first - 1;
        }
        for (id, body) in bodies {
            if id != state.last_id + 1 {
                // Not consecutive: keep only what follows the hole.
                state.history.clear();
            }
            state.last_id = id;
            if state.history.len() == self.keep {
                state.history.pop_front();
            }
            state.history.push_back(Arc::new(body.with_id(id)));
        }
        let newest = state.last_id;
        let data = json::object([
            ("type", "reset".into()),
            ("message", why.into()),
            ("newestId", newest.into()),
        ]);
        let reset = Arc::new(EventBody::new(None, &data.to_string()).with_id(newest));
        state.reset = Some(Arc::clone(&reset));
        let mut delivered = 0;
        let dropped = Self::queue_to_all(&mut state, &reset, self.queue_limit, &mut delivered);
        drop(state);
        self.changed.notify_all();
        self.dropped.fetch_add(dropped, Ordering::Relaxed);
    }

    /// Waits until the event `id` is here (or `timeout` passes); `true`
    /// if it is. In a cluster, an event published through Redis reaches
    /// this hub a moment later, by the broker's reader.
    pub fn wait_for(&self, id: u64, timeout: Duration) -> bool {
        let state = self.state();
        let (state, _) = self
            .changed
            .wait_timeout_while(state, timeout, |s| s.last_id < id)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state.last_id >= id
    }

    /// Joins the broadcast. With `last_event_id`, the events after it are
    /// looked up in the history in the same locked step that adds the
    /// subscriber, so no event can fall between the replay and the live
    /// queue, and none can be in both.
    pub fn subscribe(self: &Arc<Hub>, last_event_id: Option<u64>) -> Subscription {
        let (queue, receiver) = channel();
        let pending = Arc::new(AtomicUsize::new(0));
        let events = Queue {
            receiver,
            pending: Arc::clone(&pending),
        };
        let mut state = self.state();
        let replay = self.replay_locked(&state, last_event_id);
        let key = state.next_key;
        state.next_key += 1;
        state.subscribers.push(Subscriber {
            key,
            queue,
            pending,
        });
        drop(state);
        Subscription {
            membership: Membership {
                hub: Arc::clone(self),
                key,
            },
            events,
            replay: replay.events,
            resume: replay.resume,
            newest_id: replay.newest_id,
        }
    }

    /// Where a client that saw `last_event_id` last starts: the events it
    /// missed that the history still holds, and whether that is all of
    /// them. A reader takes the live events after `newest_id` itself.
    pub fn replay_from(&self, last_event_id: Option<u64>) -> Replay {
        let state = self.state();
        self.replay_locked(&state, last_event_id)
    }

    fn replay_locked(&self, state: &HubState, last_event_id: Option<u64>) -> Replay {
        let newest = state.last_id;
        let mut replay = Vec::new();
        // Only the newest `history_limit` events may be resumed from; the
        // rest are kept as a queue for readers that fell a little behind.
        let skip = state.history.len().saturating_sub(self.history_limit);
        let history = || state.history.iter().skip(skip);
        let resume = match last_event_id {
            None => Resume::Fresh,
            Some(n) if n > newest => Resume::Reset(format!(
                "Last-Event-ID {n} is newer than the newest event ({newest}): the server has restarted"
            )),
            Some(n) => {
                // Ids are consecutive, so the first missed event (n + 1) is
                // at a known position in the history, if it is still there.
                let oldest = history().next().map_or(newest + 1, |e| e.id);
                if n + 1 < oldest {
                    // Some events are gone for good; the rest are replayed.
                    replay.extend(history().cloned());
                    let (first, last) = (n + 1, oldest - 1);
                    let missed = if first == last {
                        format!("event {first} was missed")
                    } else {
                        format!("events {first} to {last} were missed")
                    };
                    Resume::Reset(format!(
                        "Last-Event-ID {n} is older than the history, which starts at {oldest}: {missed}"
                    ))
                } else {
                    let skip = (n + 1 - oldest) as usize;
                    replay.extend(history().skip(skip).cloned());
                    Resume::From(n)
                }
            }
        };
        Replay {
            resume,
            events: replay,
            newest_id: newest,
            generation: state.generation,
        }
    }

    /// Counts a reader among the subscribers while the token lives.
    pub fn reader(&self) -> Reader {
        self.readers.fetch_add(1, Ordering::Relaxed);
        Reader(Arc::clone(&self.readers))
    }

    /// The events after `place`, if they are still kept.
    pub fn events_after(&self, place: Place) -> After {
        Self::after_locked(&self.state(), place)
    }

    /// Waits until there is an event after `place` (or `timeout` passes),
    /// then returns the events after it. The history is a reader's queue:
    /// it holds its place by id, and one wake-up call tells every waiting
    /// reader at once.
    pub fn wait_after(&self, place: Place, timeout: Duration) -> After {
        let state = self.state();
        let (state, _) = self
            .changed
            .wait_timeout_while(state, timeout, |s| {
                s.generation == place.generation && s.last_id <= place.id
            })
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Self::after_locked(&state, place)
    }

    fn after_locked(state: &HubState, place: Place) -> After {
        if place.generation != state.generation {
            if let Some(reset) = &state.reset {
                let place = Place {
                    generation: state.generation,
                    id: reset.id,
                };
                return After::Restarted {
                    reset: Arc::clone(reset),
                    place,
                };
            }
        }
        let id = place.id;
        let oldest = state.history.front().map_or(state.last_id + 1, |e| e.id);
        if id + 1 < oldest {
            return After::Missed;
        }
        let skip = (id + 1 - oldest) as usize;
        After::Events(state.history.iter().skip(skip).cloned().collect())
    }

    /// Where a reader that starts now stands: after the newest event.
    pub fn newest_place(&self) -> Place {
        let state = self.state();
        Place {
            generation: state.generation,
            id: state.last_id,
        }
    }

    /// How far one reader may fall behind the newest event before it is
    /// dropped (`--queue`).
    pub fn queue_limit(&self) -> usize {
        self.queue_limit
    }

    /// Counts a reader dropped for falling behind (`/stats`).
    pub fn note_dropped(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// The id of the newest event (0 before the first one).
    pub fn last_id(&self) -> u64 {
        self.state().last_id
    }

    /// Subscribers with a queue of their own (chat connections), and
    /// readers (SSE streams).
    pub fn subscriber_count(&self) -> usize {
        self.state().subscribers.len() + self.readers.load(Ordering::Relaxed)
    }

    /// Subscribers dropped so far because their queue was full.
    pub fn dropped_count(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Events a client could resume from now.
    pub fn history_len(&self) -> usize {
        self.state().history.len().min(self.history_limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::TryRecvError;

    fn ids(events: &[Arc<Event>]) -> Vec<u64> {
        events.iter().map(|e| e.id).collect()
    }

    fn drain(sub: &Subscription) -> Vec<u64> {
        sub.events.try_iter().map(|e| e.id).collect()
    }

    #[test]
    fn ids_grow_by_one_and_every_subscriber_gets_each_event() {
        let hub = Hub::new(10, 10);
        let a = hub.subscribe(None);
        let b = hub.subscribe(None);
        assert_eq!(
            hub.publish(None, "{}").unwrap(),
            Published {
                id: 1,
                delivered: 2
            }
        );
        assert_eq!(hub.publish(Some("alert"), "{}").unwrap().id, 2);
        assert_eq!(drain(&a), [1, 2]);
        assert_eq!(drain(&b), [1, 2]);
        drop(b);
        assert_eq!(hub.publish(None, "{}").unwrap().delivered, 1);
    }

    #[test]
    fn each_event_is_formatted_once_and_shared() {
        let hub = Hub::new(10, 10);
        let a = hub.subscribe(None);
        let b = hub.subscribe(None);
        hub.publish(Some("note"), "{\"x\":1}").unwrap();
        let (ea, eb) = (a.events.recv().unwrap(), b.events.recv().unwrap());
        assert!(Arc::ptr_eq(&ea, &eb));
        assert_eq!(ea.sse_bytes(), b"id: 1\nevent: note\ndata: {\"x\":1}\n\n");
        assert_eq!(ea.ws_frame(), b"\x81\x07{\"x\":1}");
        // The data is kept once: both framings point at the same bytes.
        assert_eq!(ea.sse_parts()[1].as_ptr(), ea.data.as_ptr());
        assert_eq!(ea.ws_payload().as_ptr(), ea.data.as_ptr());
        let lines = hub.publish(None, "a\nb").unwrap().id;
        let event = a.events.try_iter().find(|e| e.id == lines).unwrap();
        assert_eq!(event.sse_bytes(), b"id: 2\ndata: a\ndata: b\n\n");
    }

    #[test]
    fn resume_replays_exactly_the_missed_events_then_goes_live() {
        let hub = Hub::new(100, 10);
        for _ in 0..5 {
            hub.publish(None, "{}").unwrap();
        }
        let sub = hub.subscribe(Some(2));
        assert_eq!(sub.resume, Resume::From(2));
        assert_eq!(ids(&sub.replay), [3, 4, 5]);
        hub.publish(None, "{}").unwrap();
        assert_eq!(drain(&sub), [6], "live events start right after the replay");

        let caught_up = hub.subscribe(Some(6));
        assert_eq!(
            (caught_up.resume.clone(), caught_up.replay.len()),
            (Resume::From(6), 0)
        );
        let before_any = Hub::new(100, 10).subscribe(Some(0));
        assert_eq!(before_any.resume, Resume::From(0));
    }

    #[test]
    fn resume_outside_the_history_is_a_reset() {
        let hub = Hub::new(3, 10);
        for _ in 0..10 {
            hub.publish(None, "{}").unwrap();
        }
        // History holds 8, 9, 10: resuming from 7 is still complete.
        assert_eq!(ids(&hub.subscribe(Some(7)).replay), [8, 9, 10]);
        let old = hub.subscribe(Some(6));
        assert!(
            matches!(&old.resume, Resume::Reset(why) if why.contains("event 7 was missed")),
            "{:?}",
            old.resume
        );
        assert_eq!(
            ids(&old.replay),
            [8, 9, 10],
            "what is left is still replayed"
        );
        let future = hub.subscribe(Some(11));
        assert!(matches!(&future.resume, Resume::Reset(why) if why.contains("restarted")));
        let no_history = Hub::new(0, 10);
        no_history.publish(None, "{}").unwrap();
        assert!(matches!(
            no_history.subscribe(Some(0)).resume,
            Resume::Reset(_)
        ));
    }

    #[test]
    fn a_full_queue_drops_only_that_subscriber() {
        let hub = Hub::new(100, 4);
        let slow = hub.subscribe(None);
        let fast = hub.subscribe(None);
        for i in 1..=20u64 {
            hub.publish(None, "{}").unwrap();
            assert_eq!(fast.events.try_recv().unwrap().id, i);
        }
        // The slow one keeps what was queued, then learns it was dropped.
        assert_eq!(drain(&slow), [1, 2, 3, 4]);
        assert_eq!(
            slow.events.try_recv().unwrap_err(),
            TryRecvError::Disconnected
        );
        assert_eq!(hub.dropped_count(), 1);
        assert_eq!(hub.subscriber_count(), 1);
        // And it can come back for the rest, from the history.
        assert_eq!(
            ids(&hub.subscribe(Some(4)).replay),
            (5..=20).collect::<Vec<_>>()
        );
    }

    #[test]
    fn refuses_a_name_that_would_inject_fields() {
        let hub = Hub::new(10, 10);
        assert!(hub.publish(Some("a\ndata: evil"), "{}").is_err());
        assert!(hub.publish(Some("a\rb"), "{}").is_err());
        assert_eq!(hub.last_id(), 0, "a refused event takes no id");
    }

    #[test]
    fn appended_ids_must_follow_on() {
        let hub = Hub::new(10, 10);
        let sub = hub.subscribe(None);
        assert_eq!(hub.append(1, None, "{}").unwrap().map(|p| p.id), Some(1));
        assert_eq!(
            hub.append(1, None, "{}"),
            Ok(None),
            "a duplicate changes nothing"
        );
        assert_eq!(
            hub.append(3, None, "{}"),
            Err(Gap {
                expected: 2,
                got: 3
            })
        );
        assert_eq!(
            hub.append(2, Some("note"), "{}").unwrap().map(|p| p.id),
            Some(2)
        );
        assert_eq!(drain(&sub), [1, 2]);
        assert_eq!(hub.last_id(), 2);
    }

    #[test]
    fn a_restart_resets_every_reader_and_subscriber_once() {
        let hub = Hub::new(10, 10);
        for _ in 0..5 {
            hub.publish(None, "{}").unwrap();
        }
        let chat = hub.subscribe(None);
        let reader = hub.newest_place();
        assert_eq!(reader.id, 5);
        // Redis lost its data and two events were published since.
        hub.restart(
            2,
            [(1, None, "{\"a\":1}"), (2, None, "{\"a\":2}")],
            "ids start over",
        );
        assert_eq!(hub.last_id(), 2);
        let reset = chat.events.try_recv().unwrap();
        assert_eq!(
            String::from_utf8(reset.sse_bytes()).unwrap(),
            "id: 2\ndata: {\"type\":\"reset\",\"message\":\"ids start over\",\"newestId\":2}\n\n"
        );
        // The reader in the old sequence gets the reset and its new place,
        // not the events whose ids happen to follow its old one.
        let After::Restarted { reset: seen, place } = hub.wait_after(reader, Duration::ZERO) else {
            panic!("expected a restart");
        };
        assert!(Arc::ptr_eq(&seen, &reset));
        assert_eq!(place.id, 2);
        hub.publish(None, "{}").unwrap();
        let After::Events(next) = hub.wait_after(place, Duration::ZERO) else {
            panic!("expected events");
        };
        assert_eq!(ids(&next), [3]);
        assert_eq!(
            ids(&hub.subscribe(Some(0)).replay),
            [1, 2, 3],
            "the new history"
        );
    }

    #[test]
    fn waiting_for_an_id_ends_when_it_arrives() {
        let hub = Hub::new(10, 10);
        assert!(!hub.wait_for(1, Duration::from_millis(10)));
        let publisher = Arc::clone(&hub);
        let thread = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            publisher.append(1, None, "{}").unwrap();
        });
        assert!(hub.wait_for(1, Duration::from_secs(10)));
        thread.join().unwrap();
    }
}
