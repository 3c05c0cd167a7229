//! The NATS sink's publishing window: which outbox events may be published now, and how far
//! the sink's cursor may move.
//!
//! Events enter in outbox order. One may be published once no earlier event about the same
//! subject (ticket or contact) is unacknowledged, so that a failed publish can never let a
//! later event of that subject land before it; events about other subjects go ahead meanwhile
//! instead of queueing behind it. The cursor moves only over a prefix of acknowledged events,
//! so a restart from it repeats (at worst) what JetStream's duplicate window then drops.

use std::collections::{HashMap, VecDeque};

use chrono::{DateTime, Utc};

use super::feed::OutEvent;

#[derive(Default)]
pub struct Window {
    /// Every event admitted and not yet passed by the cursor, in outbox order.
    entries: VecDeque<Entry>,
    /// How many admitted events about each subject are unacknowledged.
    open: HashMap<String, usize>,
    /// Events waiting for an earlier event about the same subject, in outbox order.
    held: HashMap<String, VecDeque<OutEvent>>,
    /// Events free to publish, in the order they became free.
    ready: VecDeque<OutEvent>,
}

struct Entry {
    seq: u64,
    time: DateTime<Utc>,
    acked: bool,
}

/// The cursor may move to `seq`; `next_time` is when the first event still unacknowledged was
/// made, if the window holds one.
#[derive(Debug, PartialEq)]
pub struct Advance {
    pub seq: u64,
    pub next_time: Option<DateTime<Utc>>,
}

impl Window {
    /// Events admitted and not yet passed by the cursor.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Takes the next event in outbox order: free to publish at once, or held until the
    /// events before it about the same subject are acknowledged.
    pub fn admit(&mut self, event: OutEvent) {
        self.entries.push_back(Entry {
            seq: event.seq,
            time: event.time,
            acked: false,
        });
        let open = self.open.entry(event.subject.clone()).or_default();
        *open += 1;
        if *open == 1 {
            self.ready.push_back(event);
        } else {
            let held = self.held.entry(event.subject.clone()).or_default();
            held.push_back(event);
        }
    }

    /// The next event free to publish.
    pub fn next_ready(&mut self) -> Option<OutEvent> {
        self.ready.pop_front()
    }

    /// Records the acknowledgement of the published event `seq` about `subject`: the next
    /// event held behind it becomes free, and the cursor may move over the acknowledged prefix
    /// (`None` while the first event is still unacknowledged).
    pub fn acked(&mut self, seq: u64, subject: &str) -> Option<Advance> {
        if let Ok(at) = self.entries.binary_search_by_key(&seq, |entry| entry.seq) {
            self.entries[at].acked = true;
        }
        match self.open.get_mut(subject) {
            Some(open) if *open > 1 => {
                *open -= 1;
                if let Some(held) = self.held.get_mut(subject) {
                    if let Some(next) = held.pop_front() {
                        self.ready.push_back(next);
                    }
                    if held.is_empty() {
                        self.held.remove(subject);
                    }
                }
            }
            _ => {
                self.open.remove(subject);
            }
        }
        let mut passed = None;
        while self.entries.front().is_some_and(|entry| entry.acked) {
            passed = self.entries.pop_front().map(|entry| entry.seq);
        }
        passed.map(|seq| Advance {
            seq,
            next_time: self.entries.front().map(|entry| entry.time),
        })
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use chrono::TimeZone;

    use super::*;

    fn event(seq: u64, subject: &str) -> OutEvent {
        OutEvent {
            seq,
            id: format!("e{seq}"),
            event_type: "deskgate.ticket.message_added".to_owned(),
            subject: subject.to_owned(),
            time: Utc.timestamp_opt(1_700_000_000 + seq as i64, 0).unwrap(),
            body: Bytes::new(),
        }
    }

    fn drain(window: &mut Window) -> Vec<u64> {
        std::iter::from_fn(|| window.next_ready().map(|e| e.seq)).collect()
    }

    #[test]
    fn other_subjects_go_ahead_of_an_event_held_behind_its_own_subject() {
        let mut window = Window::default();
        for (seq, subject) in [(1, "a"), (2, "a"), (3, "b"), (4, "a"), (5, "c")] {
            window.admit(event(seq, subject));
        }
        // 2 and 4 wait for 1; b and c do not wait behind them.
        assert_eq!(drain(&mut window), [1, 3, 5]);
        // b's ack frees nothing of a's and cannot move the cursor past the unacked 1.
        assert_eq!(window.acked(3, "b"), None);
        assert_eq!(drain(&mut window), Vec::<u64>::new());
        // 1's ack frees 2 only (4 waits for 2), and the cursor moves over 1 (3 is acked, but
        // 2 before it is not).
        let advance = window.acked(1, "a").unwrap();
        assert_eq!(advance.seq, 1);
        assert_eq!(advance.next_time, Some(event(2, "a").time));
        assert_eq!(drain(&mut window), [2]);
        assert_eq!(window.acked(2, "a").unwrap().seq, 3);
        assert_eq!(drain(&mut window), [4]);
        assert_eq!(window.acked(5, "c"), None);
        let advance = window.acked(4, "a").unwrap();
        assert_eq!((advance.seq, advance.next_time), (5, None));
        assert_eq!(window.len(), 0);
    }

    #[test]
    fn a_subject_is_never_published_twice_at_once() {
        let mut window = Window::default();
        let subjects = ["a", "b", "a", "a", "c", "b", "a"];
        for (i, subject) in subjects.iter().enumerate() {
            window.admit(event(i as u64 + 1, subject));
        }
        let mut in_flight: Vec<OutEvent> = Vec::new();
        let mut published = Vec::new();
        let mut cursor = 0;
        loop {
            while let Some(next) = window.next_ready() {
                assert!(
                    in_flight.iter().all(|e| e.subject != next.subject),
                    "{} published while an earlier event about it is in flight",
                    next.seq
                );
                published.push(next.seq);
                in_flight.push(next);
            }
            if in_flight.is_empty() {
                break;
            }
            // Acks in publish order, as JetStream gives them on one connection.
            let done = in_flight.remove(0);
            if let Some(advance) = window.acked(done.seq, &done.subject) {
                assert!(advance.seq > cursor);
                cursor = advance.seq;
            }
        }
        assert_eq!(cursor, subjects.len() as u64);
        // Within each subject, outbox order.
        for subject in ["a", "b", "c"] {
            let order: Vec<u64> = published
                .iter()
                .copied()
                .filter(|seq| subjects[*seq as usize - 1] == subject)
                .collect();
            assert!(
                order.windows(2).all(|w| w[0] < w[1]),
                "{subject}: {order:?}"
            );
        }
    }
}
