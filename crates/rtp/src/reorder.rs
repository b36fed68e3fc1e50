//! A small reorder buffer with loss detection, keyed by RTP sequence number.
//!
//! Sans-IO: the caller passes arrival time with every packet and asks for
//! released items. Sequence numbers are extended to 64 bits so wraparound at
//! 65535 is invisible. Packets come out in order; a missing packet is declared
//! lost when the window is full or when the packet after the gap has waited
//! `max_wait`. Duplicates and packets older than what was already released are
//! dropped. A jump further than [`MAX_DROPOUT`] ahead or [`MAX_MISORDER`] behind
//! is a source restart once a second packet confirms the new numbering (the RFC
//! 3550 appendix A.1 rule, so one stray packet cannot reset the stream).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// A packet this far ahead of the expected one starts a new numbering.
pub const MAX_DROPOUT: u64 = 3000;
/// A packet this far behind the expected one starts a new numbering.
pub const MAX_MISORDER: u64 = 100;

/// Defaults suit live video: 64 packets is a few frames, 50 ms is well within a
/// typical network's reordering and far below a viewer's latency budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReorderConfig {
    /// Packets held at most while waiting for a missing one.
    pub window: usize,
    /// How long a packet after a gap waits before the gap is declared lost.
    pub max_wait: Duration,
}

impl Default for ReorderConfig {
    fn default() -> Self {
        ReorderConfig {
            window: 64,
            max_wait: Duration::from_millis(50),
        }
    }
}

/// What the buffer did with a pushed packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Held for in-order release.
    Accepted,
    /// Already held: dropped.
    Duplicate,
    /// Behind the release point (already released or declared lost): dropped.
    Late,
    /// Far from the current numbering: held aside until the next packet shows
    /// whether the source restarted.
    Probation,
}

/// Released in sequence order by [`ReorderBuffer::pop`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Released<T> {
    Packet {
        seq: u64,
        item: T,
    },
    /// `count` consecutive packets starting at extended `first` never arrived.
    Lost {
        first: u64,
        count: u64,
    },
    /// The source restarted its numbering: what follows belongs to a new session.
    Restarted,
}

/// Reorders one RTP stream (one SSRC).
#[derive(Debug)]
pub struct ReorderBuffer<T> {
    config: ReorderConfig,
    /// Extended sequence number of `held[0]`; `None` before the first packet.
    next: Option<u64>,
    /// Highest extended sequence number seen, the reference for extending.
    highest: u64,
    held: VecDeque<Option<(T, Instant)>>,
    ready: VecDeque<Released<T>>,
    /// A far-away packet waiting for confirmation: (raw seq, item, arrival).
    probation: Option<(u16, T, Instant)>,
}

impl<T> ReorderBuffer<T> {
    pub fn new(config: ReorderConfig) -> ReorderBuffer<T> {
        let window = config.window.max(1);
        ReorderBuffer {
            config: ReorderConfig { window, ..config },
            next: None,
            highest: 0,
            held: VecDeque::with_capacity(window),
            ready: VecDeque::new(),
            probation: None,
        }
    }

    /// Forgets everything (new source session).
    pub fn reset(&mut self) {
        self.next = None;
        self.highest = 0;
        self.held.clear();
        self.ready.clear();
        self.probation = None;
    }

    /// Number of packets held (excluding released ones not yet popped).
    pub fn held(&self) -> usize {
        self.held.iter().filter(|slot| slot.is_some()).count()
    }

    pub fn push(&mut self, seq: u16, item: T, now: Instant) -> Pushed {
        let Some(next) = self.next else {
            self.start(seq, item, now);
            return Pushed::Accepted;
        };
        let extended = extend(self.highest, seq);
        if extended < next as i64 {
            let behind = (next as i64).saturating_sub(extended);
            return if behind > MAX_MISORDER as i64 {
                self.probation(seq, item, now)
            } else {
                Pushed::Late
            };
        }
        let extended = extended as u64;
        let offset = extended - next;
        if offset > MAX_DROPOUT {
            return self.probation(seq, item, now);
        }
        self.probation = None;
        if offset >= self.config.window as u64 {
            self.advance_to(extended + 1 - self.config.window as u64);
        }
        let index = (extended - self.next.unwrap_or(extended)) as usize;
        if self.held.len() <= index {
            self.held.resize_with(index + 1, || None);
        }
        if self.held[index].is_some() {
            return Pushed::Duplicate;
        }
        self.held[index] = Some((item, now));
        self.highest = self.highest.max(extended);
        self.release_in_order();
        Pushed::Accepted
    }

    /// Next released item: in-order packets, lost ranges, restarts. Gaps whose
    /// following packet has waited `max_wait` by `now` are declared lost here.
    pub fn pop(&mut self, now: Instant) -> Option<Released<T>> {
        if self.ready.is_empty() {
            self.expire(now);
        }
        self.ready.pop_front()
    }

    /// When the oldest gap will be declared lost, for a caller that wants a timer.
    pub fn deadline(&self) -> Option<Instant> {
        self.held
            .iter()
            .flatten()
            .map(|(_, arrival)| *arrival + self.config.max_wait)
            .next()
    }

    fn start(&mut self, seq: u16, item: T, now: Instant) {
        self.next = Some(u64::from(seq));
        self.highest = u64::from(seq);
        self.held.push_back(Some((item, now)));
        self.release_in_order();
    }

    fn probation(&mut self, seq: u16, item: T, now: Instant) -> Pushed {
        match self.probation.take() {
            Some((previous, first_item, first_arrival)) if previous.wrapping_add(1) == seq => {
                self.flush();
                self.ready.push_back(Released::Restarted);
                self.next = None;
                self.start(previous, first_item, first_arrival);
                let pushed = self.push(seq, item, now);
                debug_assert_eq!(pushed, Pushed::Accepted);
                Pushed::Accepted
            }
            _ => {
                self.probation = Some((seq, item, now));
                Pushed::Probation
            }
        }
    }

    /// Releases everything held, reporting the gaps as lost.
    fn flush(&mut self) {
        if let Some(next) = self.next {
            self.advance_to(next + self.held.len() as u64);
        }
    }

    /// Moves the window so it starts at `target`: held packets before it are
    /// released, missing ones reported lost.
    fn advance_to(&mut self, target: u64) {
        let Some(mut next) = self.next else { return };
        while next < target {
            match self.held.pop_front() {
                Some(Some((item, _))) => self.ready.push_back(Released::Packet { seq: next, item }),
                Some(None) => self.report_lost(next, 1),
                None => {
                    self.report_lost(next, target - next);
                    next = target;
                    break;
                }
            }
            next += 1;
        }
        self.next = Some(next);
    }

    fn report_lost(&mut self, first: u64, count: u64) {
        if let Some(Released::Lost {
            first: previous,
            count: previous_count,
        }) = self.ready.back_mut()
        {
            if *previous + *previous_count == first {
                *previous_count += count;
                return;
            }
        }
        self.ready.push_back(Released::Lost { first, count });
    }

    fn release_in_order(&mut self) {
        let Some(mut next) = self.next else { return };
        while let Some(Some(_)) = self.held.front() {
            if let Some(Some((item, _))) = self.held.pop_front() {
                self.ready.push_back(Released::Packet { seq: next, item });
            }
            next += 1;
        }
        self.next = Some(next);
    }

    fn expire(&mut self, now: Instant) {
        let Some(next) = self.next else { return };
        let overdue = self.held.iter().position(|slot| {
            slot.as_ref().is_some_and(|(_, arrival)| {
                now.saturating_duration_since(*arrival) >= self.config.max_wait
            })
        });
        if let Some(index) = overdue {
            self.advance_to(next + index as u64);
            self.release_in_order();
        }
    }
}

/// Extends a 16-bit sequence number to the value closest to `reference` (may be
/// negative when a restart lands just below the first number seen).
fn extend(reference: u64, seq: u16) -> i64 {
    let delta = i64::from(seq.wrapping_sub(reference as u16) as i16);
    (reference as i64).saturating_add(delta)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buffer() -> ReorderBuffer<u16> {
        ReorderBuffer::new(ReorderConfig {
            window: 8,
            max_wait: Duration::from_millis(50),
        })
    }

    fn drain(buf: &mut ReorderBuffer<u16>, now: Instant) -> Vec<Released<u16>> {
        std::iter::from_fn(|| buf.pop(now)).collect()
    }

    fn packets(seqs: &[u16]) -> Vec<Released<u16>> {
        seqs.iter()
            .map(|&s| Released::Packet {
                seq: u64::from(s),
                item: s,
            })
            .collect()
    }

    #[test]
    fn in_order_packets_pass_straight_through() {
        let now = Instant::now();
        let mut buf = buffer();
        for seq in 10..20 {
            assert_eq!(buf.push(seq, seq, now), Pushed::Accepted);
        }
        assert_eq!(drain(&mut buf, now), packets(&(10..20).collect::<Vec<_>>()));
    }

    #[test]
    fn swapped_packets_come_out_in_order() {
        let now = Instant::now();
        let mut buf = buffer();
        for seq in [1, 3, 2, 4, 6, 5] {
            buf.push(seq, seq, now);
        }
        assert_eq!(drain(&mut buf, now), packets(&[1, 2, 3, 4, 5, 6]));
    }

    #[test]
    fn gap_is_held_until_max_wait_then_reported_lost() {
        let now = Instant::now();
        let mut buf = buffer();
        buf.push(1, 1, now);
        buf.push(3, 3, now + Duration::from_millis(10));
        assert_eq!(
            drain(&mut buf, now + Duration::from_millis(59)),
            packets(&[1])
        );
        assert_eq!(buf.held(), 1);
        assert_eq!(buf.deadline(), Some(now + Duration::from_millis(60)));
        let later = drain(&mut buf, now + Duration::from_millis(60));
        assert_eq!(
            later,
            vec![
                Released::Lost { first: 2, count: 1 },
                Released::Packet { seq: 3, item: 3 }
            ]
        );
        // The lost packet arriving afterwards is too late.
        assert_eq!(
            buf.push(2, 2, now + Duration::from_millis(70)),
            Pushed::Late
        );
    }

    #[test]
    fn full_window_declares_the_gap_lost() {
        let now = Instant::now();
        let mut buf = buffer();
        buf.push(0, 0, now);
        for seq in 3..12 {
            buf.push(seq, seq, now);
        }
        let mut expected = packets(&[0]);
        expected.push(Released::Lost { first: 1, count: 2 });
        expected.extend(packets(&(3..12).collect::<Vec<_>>()));
        assert_eq!(drain(&mut buf, now), expected);
    }

    #[test]
    fn duplicates_are_dropped() {
        let now = Instant::now();
        let mut buf = buffer();
        buf.push(5, 5, now);
        buf.push(7, 7, now);
        assert_eq!(buf.push(7, 7, now), Pushed::Duplicate);
        assert_eq!(buf.push(5, 5, now), Pushed::Late);
        buf.push(6, 6, now);
        assert_eq!(drain(&mut buf, now), packets(&[5, 6, 7]));
    }

    #[test]
    fn wraparound_at_65535_is_seamless() {
        let now = Instant::now();
        let mut buf = buffer();
        for seq in [65533, 65535, 65534, 1, 0, 2] {
            assert_eq!(buf.push(seq, seq, now), Pushed::Accepted);
        }
        let released: Vec<(u64, u16)> = drain(&mut buf, now)
            .into_iter()
            .filter_map(|r| match r {
                Released::Packet { seq, item } => Some((seq, item)),
                _ => None,
            })
            .collect();
        assert_eq!(
            released,
            vec![
                (65533, 65533),
                (65534, 65534),
                (65535, 65535),
                (65536, 0),
                (65537, 1),
                (65538, 2)
            ]
        );
    }

    #[test]
    fn restart_jump_resets_after_confirmation() {
        let now = Instant::now();
        let mut buf = buffer();
        buf.push(100, 100, now);
        buf.push(102, 102, now);
        assert_eq!(buf.push(40_000, 40_000, now), Pushed::Probation);
        assert_eq!(buf.push(40_001, 40_001, now), Pushed::Accepted);
        assert_eq!(
            drain(&mut buf, now),
            vec![
                Released::Packet {
                    seq: 100,
                    item: 100
                },
                Released::Lost {
                    first: 101,
                    count: 1
                },
                Released::Packet {
                    seq: 102,
                    item: 102
                },
                Released::Restarted,
                Released::Packet {
                    seq: 40_000,
                    item: 40_000
                },
                Released::Packet {
                    seq: 40_001,
                    item: 40_001
                },
            ]
        );
    }

    #[test]
    fn a_single_stray_packet_does_not_reset() {
        let now = Instant::now();
        let mut buf = buffer();
        buf.push(100, 100, now);
        assert_eq!(buf.push(9_000, 9_000, now), Pushed::Probation);
        assert_eq!(buf.push(101, 101, now), Pushed::Accepted);
        assert_eq!(drain(&mut buf, now), packets(&[100, 101]));
    }

    #[test]
    fn restart_to_lower_numbers_is_detected() {
        let now = Instant::now();
        let mut buf = buffer();
        buf.push(30_000, 1, now);
        buf.push(20_000, 2, now);
        buf.push(20_001, 3, now);
        let items: Vec<Released<u16>> = drain(&mut buf, now);
        assert_eq!(
            items,
            vec![
                Released::Packet {
                    seq: 30_000,
                    item: 1
                },
                Released::Restarted,
                Released::Packet {
                    seq: 20_000,
                    item: 2
                },
                Released::Packet {
                    seq: 20_001,
                    item: 3
                },
            ]
        );
    }

    #[test]
    fn memory_stays_within_the_window_under_any_input() {
        let now = Instant::now();
        let mut buf = buffer();
        let (mut seq, mut state) = (0u16, 1u64);
        for _ in 0..10_000 {
            // Pseudo-random walk with gaps, duplicates, reordering and far jumps.
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let step = match (state >> 33) % 100 {
                0 => 20_000,
                roll => roll as u16 % 12,
            };
            seq = seq.wrapping_add(step).wrapping_sub(4);
            buf.push(seq, seq, now);
            assert!(buf.held.len() <= 8, "held {} slots", buf.held.len());
            while buf.pop(now).is_some() {}
        }
    }
}
