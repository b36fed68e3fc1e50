//! A small reorder buffer with loss detection, keyed by RTP sequence number.
//!
//! Sans-IO: the caller passes arrival time with every packet and asks for
//! released items. Sequence numbers are extended ([`ExtSeqNo`]) so wraparound
//! at 65535 is invisible. Packets come out in order; a missing packet is declared
//! lost when the window is full or when the packet after the gap has waited
//! `max_wait`. Duplicates and packets older than what was already released are
//! dropped. A jump further than [`MAX_DROPOUT`] ahead or [`MAX_MISORDER`] behind
//! is a source restart once a second packet confirms the new numbering (the RFC
//! 3550 appendix A.1 rule, so one stray packet cannot reset the stream).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::ids::{Before, ExtSeqNo, SeqNo};

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
        seq: ExtSeqNo,
        item: T,
    },
    /// `count` consecutive packets starting at `first` never arrived.
    Lost {
        first: ExtSeqNo,
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
    next: Option<ExtSeqNo>,
    /// Highest extended sequence number seen, the reference for extending.
    highest: ExtSeqNo,
    held: VecDeque<Option<(T, Instant)>>,
    ready: VecDeque<Released<T>>,
    /// A far-away packet waiting for confirmation: (seq, item, arrival).
    probation: Option<(SeqNo, T, Instant)>,
}

impl<T> ReorderBuffer<T> {
    pub fn new(config: ReorderConfig) -> ReorderBuffer<T> {
        let window = config.window.max(1);
        ReorderBuffer {
            config: ReorderConfig { window, ..config },
            next: None,
            highest: ExtSeqNo::new(0),
            held: VecDeque::with_capacity(window),
            ready: VecDeque::new(),
            probation: None,
        }
    }

    /// Forgets everything (new source session).
    pub fn reset(&mut self) {
        self.next = None;
        self.highest = ExtSeqNo::new(0);
        self.held.clear();
        self.ready.clear();
        self.probation = None;
    }

    /// Number of packets held (excluding released ones not yet popped).
    pub fn held(&self) -> usize {
        self.held.iter().filter(|slot| slot.is_some()).count()
    }

    pub fn push(&mut self, seq: SeqNo, item: T, now: Instant) -> Pushed {
        let Some(next) = self.next else {
            self.start(seq, item, now);
            return Pushed::Accepted;
        };
        let extended = match self.highest.extend(seq) {
            Ok(extended) if extended >= next => extended,
            Ok(extended) => return self.behind(next - extended, seq, item, now),
            // Older than the first packet of this numbering (a restart just
            // below it, or a reordered packet right at the start).
            Err(Before { by }) => {
                return self.behind(next.get() + u64::from(by), seq, item, now);
            }
        };
        let offset = extended - next;
        if offset > MAX_DROPOUT {
            return self.probation(seq, item, now);
        }
        self.probation = None;
        let window = self.config.window as u64;
        if offset >= window {
            self.advance_to(next + (offset + 1 - window));
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

    fn start(&mut self, seq: SeqNo, item: T, now: Instant) {
        self.next = Some(ExtSeqNo::from(seq));
        self.highest = ExtSeqNo::from(seq);
        self.held.push_back(Some((item, now)));
        self.release_in_order();
    }

    /// A packet `behind` numbers before the release point: late, or a restart
    /// to lower numbers when that is further back than reordering explains.
    fn behind(&mut self, behind: u64, seq: SeqNo, item: T, now: Instant) -> Pushed {
        if behind > MAX_MISORDER {
            self.probation(seq, item, now)
        } else {
            Pushed::Late
        }
    }

    fn probation(&mut self, seq: SeqNo, item: T, now: Instant) -> Pushed {
        match self.probation.take() {
            Some((previous, first_item, first_arrival)) if previous.next() == seq => {
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
    fn advance_to(&mut self, target: ExtSeqNo) {
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

    fn report_lost(&mut self, first: ExtSeqNo, count: u64) {
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
                seq: ExtSeqNo::from(SeqNo::new(s)),
                item: s,
            })
            .collect()
    }

    #[test]
    fn in_order_packets_pass_straight_through() {
        let now = Instant::now();
        let mut buf = buffer();
        for seq in 10..20 {
            assert_eq!(buf.push(SeqNo::new(seq), seq, now), Pushed::Accepted);
        }
        assert_eq!(drain(&mut buf, now), packets(&(10..20).collect::<Vec<_>>()));
    }

    #[test]
    fn swapped_packets_come_out_in_order() {
        let now = Instant::now();
        let mut buf = buffer();
        for seq in [1, 3, 2, 4, 6, 5] {
            buf.push(SeqNo::new(seq), seq, now);
        }
        assert_eq!(drain(&mut buf, now), packets(&[1, 2, 3, 4, 5, 6]));
    }

    #[test]
    fn gap_is_held_until_max_wait_then_reported_lost() {
        let now = Instant::now();
        let mut buf = buffer();
        buf.push(SeqNo::new(1), 1, now);
        buf.push(SeqNo::new(3), 3, now + Duration::from_millis(10));
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
                Released::Lost {
                    first: ExtSeqNo::new(2),
                    count: 1
                },
                Released::Packet {
                    seq: ExtSeqNo::new(3),
                    item: 3
                }
            ]
        );
        // The lost packet arriving afterwards is too late.
        assert_eq!(
            buf.push(SeqNo::new(2), 2, now + Duration::from_millis(70)),
            Pushed::Late
        );
    }

    #[test]
    fn full_window_declares_the_gap_lost() {
        let now = Instant::now();
        let mut buf = buffer();
        buf.push(SeqNo::new(0), 0, now);
        for seq in 3..12 {
            buf.push(SeqNo::new(seq), seq, now);
        }
        let mut expected = packets(&[0]);
        expected.push(Released::Lost {
            first: ExtSeqNo::new(1),
            count: 2,
        });
        expected.extend(packets(&(3..12).collect::<Vec<_>>()));
        assert_eq!(drain(&mut buf, now), expected);
    }

    #[test]
    fn duplicates_are_dropped() {
        let now = Instant::now();
        let mut buf = buffer();
        buf.push(SeqNo::new(5), 5, now);
        buf.push(SeqNo::new(7), 7, now);
        assert_eq!(buf.push(SeqNo::new(7), 7, now), Pushed::Duplicate);
        assert_eq!(buf.push(SeqNo::new(5), 5, now), Pushed::Late);
        buf.push(SeqNo::new(6), 6, now);
        assert_eq!(drain(&mut buf, now), packets(&[5, 6, 7]));
    }

    #[test]
    fn wraparound_at_65535_is_seamless() {
        let now = Instant::now();
        let mut buf = buffer();
        for seq in [65533, 65535, 65534, 1, 0, 2] {
            assert_eq!(buf.push(SeqNo::new(seq), seq, now), Pushed::Accepted);
        }
        let released: Vec<(u64, u16)> = drain(&mut buf, now)
            .into_iter()
            .filter_map(|r| match r {
                Released::Packet { seq, item } => Some((seq.get(), item)),
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
        buf.push(SeqNo::new(100), 100, now);
        buf.push(SeqNo::new(102), 102, now);
        assert_eq!(buf.push(SeqNo::new(40_000), 40_000, now), Pushed::Probation);
        assert_eq!(buf.push(SeqNo::new(40_001), 40_001, now), Pushed::Accepted);
        assert_eq!(
            drain(&mut buf, now),
            vec![
                Released::Packet {
                    seq: ExtSeqNo::new(100),
                    item: 100
                },
                Released::Lost {
                    first: ExtSeqNo::new(101),
                    count: 1
                },
                Released::Packet {
                    seq: ExtSeqNo::new(102),
                    item: 102
                },
                Released::Restarted,
                Released::Packet {
                    seq: ExtSeqNo::new(40_000),
                    item: 40_000
                },
                Released::Packet {
                    seq: ExtSeqNo::new(40_001),
                    item: 40_001
                },
            ]
        );
    }

    #[test]
    fn a_single_stray_packet_does_not_reset() {
        let now = Instant::now();
        let mut buf = buffer();
        buf.push(SeqNo::new(100), 100, now);
        assert_eq!(buf.push(SeqNo::new(9_000), 9_000, now), Pushed::Probation);
        assert_eq!(buf.push(SeqNo::new(101), 101, now), Pushed::Accepted);
        assert_eq!(drain(&mut buf, now), packets(&[100, 101]));
    }

    #[test]
    fn restart_to_lower_numbers_is_detected() {
        let now = Instant::now();
        let mut buf = buffer();
        buf.push(SeqNo::new(30_000), 1, now);
        buf.push(SeqNo::new(20_000), 2, now);
        buf.push(SeqNo::new(20_001), 3, now);
        let items: Vec<Released<u16>> = drain(&mut buf, now);
        assert_eq!(
            items,
            vec![
                Released::Packet {
                    seq: ExtSeqNo::new(30_000),
                    item: 1
                },
                Released::Restarted,
                Released::Packet {
                    seq: ExtSeqNo::new(20_000),
                    item: 2
                },
                Released::Packet {
                    seq: ExtSeqNo::new(20_001),
                    item: 3
                },
            ]
        );
    }

    #[test]
    fn a_packet_older_than_the_first_is_late_or_a_restart() {
        let now = Instant::now();
        // 65534 is two before 0, and 0 is five before the first packet (5):
        // seven behind it, eight behind the release point. Reordering: late.
        let mut buf = buffer();
        buf.push(SeqNo::new(5), 5, now);
        assert_eq!(buf.push(SeqNo::new(65_534), 65_534, now), Pushed::Late);
        assert_eq!(buf.push(SeqNo::new(0), 0, now), Pushed::Late);
        assert_eq!(buf.push(SeqNo::new(6), 6, now), Pushed::Accepted);
        assert_eq!(drain(&mut buf, now), packets(&[5, 6]));
        // 40 000 is closer below 5 than above it, far past reordering: a
        // restart once the next number confirms it.
        let mut buf = buffer();
        buf.push(SeqNo::new(5), 5, now);
        assert_eq!(buf.push(SeqNo::new(40_000), 40_000, now), Pushed::Probation);
        assert_eq!(buf.push(SeqNo::new(40_001), 40_001, now), Pushed::Accepted);
        let mut expected = packets(&[5]);
        expected.push(Released::Restarted);
        expected.extend(packets(&[40_000, 40_001]));
        assert_eq!(drain(&mut buf, now), expected);
        // The restarted numbering extends from its own first packet.
        assert_eq!(buf.push(SeqNo::new(39_990), 39_990, now), Pushed::Late);
    }

    #[test]
    fn extension_carries_on_over_several_wraps() {
        // Every fourth number from 65 000 on, three times round the 16 bits: the
        // three between each pair are lost, and the numbering never restarts.
        const PUSHED: u64 = 3 * 65_536 / 4;
        let now = Instant::now();
        let later = now + Duration::from_secs(1);
        let mut buf = buffer();
        let mut seq = SeqNo::new(65_000);
        let mut released = Vec::new();
        for _ in 0..PUSHED {
            assert_eq!(buf.push(seq, seq.get(), now), Pushed::Accepted);
            released.extend(drain(&mut buf, later));
            seq = seq.wrapping_add(4);
        }
        let last = ExtSeqNo::new(65_000 + 4 * (PUSHED - 1));
        assert_eq!(last.get() >> 16, 3, "three wraps");
        assert_eq!(
            released.last(),
            Some(&Released::Packet {
                seq: last,
                item: last.seq().get(),
            })
        );
        let lost: u64 = released
            .iter()
            .map(|r| match r {
                Released::Lost { count, .. } => *count,
                Released::Packet { .. } => 0,
                Released::Restarted => panic!("restarted"),
            })
            .sum();
        assert_eq!(lost, 3 * (PUSHED - 1));
        assert_eq!(released.len() as u64, 2 * PUSHED - 1);
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
            buf.push(SeqNo::new(seq), seq, now);
            assert!(buf.held.len() <= 8, "held {} slots", buf.held.len());
            while buf.pop(now).is_some() {}
        }
    }
}
