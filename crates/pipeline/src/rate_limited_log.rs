//! Rate limiting for data-path log lines: a flood of bad packets gives one line a
//! second with a count of what was left out, never a line per packet.
//!
//! Sans-IO: the caller passes the time and writes the line itself (with its own
//! fields), so every source logs in its own words through one limiter.

use std::time::{Duration, Instant};

/// Data-path problems are logged at most this often per limiter.
pub const LOG_INTERVAL: Duration = Duration::from_secs(1);

/// Decides when the next line of one kind may be written.
#[derive(Debug, Default)]
pub struct RateLimitedLog {
    last_logged: Option<Instant>,
    suppressed: u64,
}

impl RateLimitedLog {
    /// Records an occurrence at `now`. `Some(left_out)` when a line is due (the
    /// number of occurrences since the last line that were not logged); `None`
    /// when this one is only counted.
    pub fn occurred(&mut self, now: Instant) -> Option<u64> {
        let due = self
            .last_logged
            .is_none_or(|last| now.saturating_duration_since(last) >= LOG_INTERVAL);
        if !due {
            self.suppressed += 1;
            return None;
        }
        self.last_logged = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_count_left_out() {
        let mut log = RateLimitedLog::default();
        let t0 = Instant::now();
        assert_eq!(log.occurred(t0), Some(0));
        let within: Vec<_> = (1..=5)
            .map(|ms| log.occurred(t0 + Duration::from_millis(ms * 100)))
            .collect();
        assert_eq!(within, [None; 5]);
        assert_eq!(log.occurred(t0 + LOG_INTERVAL), Some(5));
        assert_eq!(log.occurred(t0 + LOG_INTERVAL), None);
        assert_eq!(log.occurred(t0 + 3 * LOG_INTERVAL), Some(1));
    }
}
