//! The channel hub behind `/api/events` (subscribe) and `/api/pub` (publish).
//!
//! Fan-out is the hot path: one publisher may feed a thousand subscribers.
//! A message is checked as UTF-8 once, into one [`Utf8Bytes`], and each
//! subscriber gets a reference-counted clone (no copy: it becomes the text
//! frame as is) through its own bounded queue with `try_send`, so a
//! slow subscriber can never slow the publisher or the others. When a queue is
//! full the message is dropped *for that subscriber only* and counted; the
//! subscriber's socket task reports the count as `{"type":"lagged","dropped":N}`
//! before its next message.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::RwLock;
use prometheus_client::metrics::counter::Counter;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::server::ws::Utf8Bytes;

/// Messages a subscriber may have queued before further ones are dropped.
pub const SUBSCRIBER_QUEUE: usize = 256;
/// Channels that may exist at once; one more subscription is refused.
pub const MAX_CHANNELS: usize = 10_000;
/// Largest published message (SPEC §3.2).
pub const MAX_MESSAGE: usize = 64 * 1024;
/// The channel carrying the server's own events; nobody else may publish here.
pub const SERVER_CHANNEL: &str = "server";

/// Whether `id` is a valid channel id: `^[A-Za-z0-9._-]{1,128}$`.
pub fn valid_channel(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// One subscriber's end of a channel.
struct Sink {
    tx: mpsc::Sender<Utf8Bytes>,
    /// Messages dropped because the queue was full, not yet reported.
    dropped: Arc<AtomicU64>,
}

#[derive(Default)]
struct Channel {
    sinks: Vec<(u64, Sink)>,
}

/// Counters exported on `/metrics` (shared with `crate::metrics`).
#[derive(Debug, Default, Clone)]
pub struct HubStats {
    pub delivered: Counter,
    pub dropped: Counter,
    pub published: Counter,
}

/// The hub: channel name -> subscribers.
#[derive(Default)]
pub struct Hub {
    channels: RwLock<HashMap<Arc<str>, Channel>>,
    next_id: AtomicU64,
    pub stats: HubStats,
}

/// Why a subscription was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscribeError {
    TooManyChannels,
}

/// A live subscription; dropping it unsubscribes (and removes the channel
/// when it was the last listener).
pub struct Subscription {
    hub: Arc<Hub>,
    channel: Arc<str>,
    id: u64,
    pub rx: mpsc::Receiver<Utf8Bytes>,
    dropped: Arc<AtomicU64>,
}

impl Subscription {
    /// Messages lost to a full queue since the last call (reported as `lagged`).
    pub fn take_dropped(&self) -> u64 {
        self.dropped.swap(0, Ordering::Relaxed)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut channels = self.hub.channels.write();
        if let Some(ch) = channels.get_mut(&self.channel) {
            ch.sinks.retain(|(id, _)| *id != self.id);
            if ch.sinks.is_empty() {
                channels.remove(&self.channel);
            }
        }
    }
}

#[derive(Serialize)]
struct ServerEvent<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    ts: String,
    data: serde_json::Value,
}

impl Hub {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// A hub counting into `stats`.
    pub fn with_stats(stats: HubStats) -> Arc<Self> {
        Arc::new(Self {
            stats,
            ..Self::default()
        })
    }

    /// Subscribe to `channel` (already validated by the caller).
    ///
    /// # Errors
    /// [`SubscribeError::TooManyChannels`] when the channel would be one too many.
    pub fn subscribe(self: &Arc<Self>, channel: &str) -> Result<Subscription, SubscribeError> {
        let (tx, rx) = mpsc::channel(SUBSCRIBER_QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut channels = self.channels.write();
        let name: Arc<str> = match channels.get_key_value(channel) {
            Some((k, _)) => k.clone(),
            None if channels.len() >= MAX_CHANNELS => return Err(SubscribeError::TooManyChannels),
            None => Arc::from(channel),
        };
        let ch = channels.entry(name.clone()).or_default();
        ch.sinks.push((
            id,
            Sink {
                tx,
                dropped: dropped.clone(),
            },
        ));
        Ok(Subscription {
            hub: self.clone(),
            channel: name,
            id,
            rx,
            dropped,
        })
    }

    /// Deliver `msg` to every subscriber of `channel`; returns how many got it.
    /// Text frames carry UTF-8; anything else is made valid once, here
    /// (invalid sequences become U+FFFD), not once per subscriber.
    pub fn publish(&self, channel: &str, msg: Bytes) -> usize {
        let msg = Utf8Bytes::try_from(msg.clone())
            .unwrap_or_else(|_| String::from_utf8_lossy(&msg).into_owned().into());
        self.stats.published.inc();
        let channels = self.channels.read();
        let Some(ch) = channels.get(channel) else {
            return 0;
        };
        let mut delivered = 0;
        let mut dropped = 0;
        for (_, sink) in &ch.sinks {
            match sink.tx.try_send(msg.clone()) {
                Ok(()) => delivered += 1,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    sink.dropped.fetch_add(1, Ordering::Relaxed);
                    dropped += 1;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
        self.stats.delivered.inc_by(delivered as u64);
        self.stats.dropped.inc_by(dropped);
        delivered
    }

    /// Publish one of the server's own events on the `server` channel as
    /// `{"type","ts","data"}`.
    pub fn server_event(&self, kind: &str, data: serde_json::Value) {
        let ev = ServerEvent {
            kind,
            ts: crate::util::now_rfc3339(),
            data,
        };
        let bytes = serde_json::to_vec(&ev).expect("serialisable");
        self.publish(SERVER_CHANNEL, Bytes::from(bytes));
    }

    /// Subscribers of `channel` right now.
    pub fn subscribers(&self, channel: &str) -> usize {
        self.channels
            .read()
            .get(channel)
            .map_or(0, |c| c.sinks.len())
    }

    /// Channels that exist right now.
    pub fn channel_count(&self) -> usize {
        self.channels.read().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_ids() {
        assert!(valid_channel("server"));
        assert!(valid_channel("session.ab-12_x"));
        assert!(!valid_channel(""));
        assert!(!valid_channel("a/b"));
        assert!(!valid_channel("a b"));
        assert!(!valid_channel(&"x".repeat(129)));
        assert!(valid_channel(&"x".repeat(128)));
    }

    #[tokio::test]
    async fn full_queue_drops_for_that_subscriber_only() {
        let hub = Hub::new();
        let slow = hub.subscribe("c").unwrap();
        let mut fast = hub.subscribe("c").unwrap();
        for i in 0..SUBSCRIBER_QUEUE + 10 {
            hub.publish("c", Bytes::from(format!("{i}")));
            assert!(fast.rx.recv().await.is_some());
        }
        assert_eq!(slow.take_dropped(), 10);
        assert_eq!(slow.take_dropped(), 0);
    }

    #[tokio::test]
    async fn last_subscriber_removes_the_channel() {
        let hub = Hub::new();
        let a = hub.subscribe("c").unwrap();
        let b = hub.subscribe("c").unwrap();
        assert_eq!(hub.channel_count(), 1);
        drop(a);
        assert_eq!(hub.subscribers("c"), 1);
        drop(b);
        assert_eq!(hub.channel_count(), 0);
        assert_eq!(hub.publish("c", Bytes::from_static(b"{}")), 0);
    }
}
