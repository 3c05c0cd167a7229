//! Progress lines for the replay after a start-up.

use std::time::Duration;

/// Progress lines while the processor applies what was journaled before start-up (after a
/// crash, or a stop whose grace period cut the processor short): a line to begin, one every
/// few seconds, and one at the end.
pub(super) struct Replay {
    from: u64,
    upto: u64,
    started: std::time::Instant,
    last_line: std::time::Instant,
    done: bool,
}

impl Replay {
    const EVERY: Duration = Duration::from_secs(5);

    pub(super) fn new(cursor: u64, durable: u64) -> Replay {
        let now = std::time::Instant::now();
        let done = cursor >= durable;
        if !done {
            let records = durable - cursor;
            tracing::info!(
                cursor,
                durable,
                "replay: {records} journal records to apply before catching up"
            );
        }
        Replay {
            from: cursor,
            upto: durable,
            started: now,
            last_line: now,
            done,
        }
    }

    pub(super) fn applied(&mut self, cursor: u64) {
        if self.done {
            return;
        }
        let (applied, total) = (cursor.min(self.upto) - self.from, self.upto - self.from);
        if cursor >= self.upto {
            self.done = true;
            let secs = self.started.elapsed().as_secs_f64();
            tracing::info!("replay: done, {total} records in {secs:.1} s");
        } else if self.last_line.elapsed() >= Replay::EVERY {
            self.last_line = std::time::Instant::now();
            tracing::info!("replay: {applied}/{total} records");
        }
    }
}
