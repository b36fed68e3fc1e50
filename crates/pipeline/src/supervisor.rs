//! The lifecycle every network source shares (RTSP camera, WHEP), as one sans-IO
//! state machine: the source's tokio task feeds it events and the time, and carries
//! out what it asks (open or close a session). It decides *when*; the task does the
//! protocol.
//!
//! # Inputs and outputs
//!
//! Inputs are methods that take `now`: [`subscribers`](Supervisor::subscribers),
//! [`opened`](Supervisor::opened), [`failed`](Supervisor::failed),
//! [`ended`](Supervisor::ended), [`media`](Supervisor::media),
//! [`switched`](Supervisor::switched), [`unwell`](Supervisor::unwell) /
//! [`recovered`](Supervisor::recovered), [`hold_until`](Supervisor::hold_until),
//! [`retry_now`](Supervisor::retry_now),
//! [`stop`](Supervisor::stop) and [`tick`](Supervisor::tick). Outputs come from
//! [`poll_output`](Supervisor::poll_output) until it returns
//! [`Output::WaitUntil`]: the next deadline, at which the task calls `tick`. Every
//! input first fires the deadlines that passed before `now`, so events and timers
//! are handled in time order however late the task wakes.
//!
//! Sessions are named by the [`SessionId`] of the [`Output::Connect`] that asked for
//! them; every session the supervisor asked for gets exactly one
//! [`Output::Disconnect`], also one still being opened (the task closes it once open)
//! and one whose failure the task reported (so WHEP still DELETEs it). Events about
//! a session already disconnected are ignored.
//!
//! # States
//!
//! ```text
//! Idle ──first subscriber (or always_on)──► Connecting ──opened──► Playing
//! Playing ──rotation due, or unwell for its grace──► Rotating ──switched──► Playing
//! Rotating ──next one failed or ended──► Playing (next one again after ROTATION_RETRY)
//! Playing ──active one ended──► Connecting ──next one switched──► Playing
//! Rotating ──active one failed or ended──► Connecting ──next one switched──► Playing
//! Connecting, Playing ──failed, no other session──► Retrying ──backoff over──► Connecting
//! Retrying ──backoff over, nobody watching──► Idle
//! any but Idle ──idle grace over──► Idle          any ──stop──► Stopped
//! ```
//!
//! - **On demand**: connect on the first subscriber (or at once when `always_on`);
//!   `idle_grace` after the last one leaves every session is closed
//!   ([`Why::Idle`]); a subscriber coming back within the grace cancels it.
//! - **Hold** ([`hold_until`](Supervisor::hold_until)): demand that expires. An
//!   on-demand source connects at once and stays connected (rotating as usual)
//!   until the hold ends even with nobody watching; a later hold extends it. The
//!   idle grace counts from the end of the hold (or from the last subscriber
//!   leaving, whichever is later); a subscriber there when it ends keeps it.
//! - **Backoff**: a failure with no other session to carry the stream waits the
//!   stepped [`Backoff`] (lengthened by a `Retry-After`) in `Retrying`, then
//!   connects if someone still watches. Media counts towards the backoff's
//!   healthy-session reset; closing for idleness ends the session for it too.
//! - **Rotation** (optional, [`Rotation`]): make-before-break before a session cap.
//!   The next session is opened [`Rotation::rotate_after`] after the active one was
//!   *asked for* (a server's cap runs from about its request), or sooner when the
//!   task says the active one is [`unwell`](Supervisor::unwell). It streams only
//!   once the task reports [`switched`](Supervisor::switched) (WHEP: at its first
//!   keyframe); then the old one is closed ([`Why::Rotated`]). A next session that
//!   fails or ends before that is retried after [`ROTATION_RETRY`] while the active
//!   one keeps streaming. If instead the active one fails or ends first, the next
//!   one carries on (`Connecting` until it switches) without backoff; if that one
//!   fails too, or ends before switching, the source backs off.
//! - **Ended** sessions (the server closed a healthy session) are replaced at once
//!   by a next session, without backoff: an ended session is not a failure.
//! - **Stall**: no media from the active session for `stall_timeout` (counted from
//!   when it started streaming, and afresh when a successor has to take over) gives
//!   [`Output::Stalled`]; the task answers with `failed` (or `retry_now`) for it,
//!   so that it names the error in its own terms and can decide as for any other
//!   failure (RTSP `auto` takes a UDP session that never delivered as a reason to
//!   use TCP).

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use crate::backoff::Backoff;
use crate::source_state::SourceState;

/// Wait before opening the next session again when an attempt failed while the
/// active session still streams (it has until the cap; a quick retry is right).
pub const ROTATION_RETRY: Duration = Duration::from_secs(1);

/// A session cap the source rotates sessions before (make-before-break).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// The server's cap on a session's life (Ring: 30 s battery, 60 s wired).
    pub max_session: Duration,
    /// How long before the cap the next session is opened: it must cover opening
    /// one and waiting for its first keyframe.
    pub lead: Duration,
}

impl Rotation {
    /// When the next session is opened: `lead` before the cap, but never before half
    /// of it, so that a short cap still leaves each session time to stream.
    pub fn rotate_after(&self) -> Duration {
        self.max_session
            .saturating_sub(self.lead)
            .max(self.max_session / 2)
    }
}

/// How one source is supervised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupervisorConfig {
    /// Stay connected with no subscriber.
    pub always_on: bool,
    /// How long an on-demand source stays connected after its last subscriber leaves.
    pub idle_grace: Duration,
    /// No media from the active session for this long is a failure.
    pub stall_timeout: Duration,
    pub rotation: Option<Rotation>,
}

/// Names one session the supervisor asked for (unique for the supervisor's life).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(u64);

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Why a session is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// Nobody watched for the idle grace period.
    Idle,
    /// The next session took over.
    Rotated,
    /// The task reported it failed (release what is left of it).
    Failed,
    /// The task reported it ended (release what is left of it).
    Ended,
    /// The source is stopping.
    Stopped,
}

/// What the supervisor asks of its task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Open a session. `next`: it is to take over from another one (make-before-break
    /// rotation, or the successor of one that ended), so the task reports
    /// [`Supervisor::switched`] once it can stream from it; otherwise it streams as
    /// soon as [`Supervisor::opened`].
    Connect { id: SessionId, next: bool },
    /// Close this session (or, while it is still being opened, close it once open).
    Disconnect { id: SessionId, why: Why },
    /// The source's state changed.
    Status(SourceState),
    /// No media from this session for the stall timeout: report it as failed.
    Stalled { id: SessionId },
    /// Nothing more to do until this time (call [`Supervisor::tick`] then) or the
    /// next input; `None`: until the next input.
    WaitUntil(Option<Instant>),
}

/// The session media comes from.
#[derive(Debug, Clone, Copy)]
struct Active {
    id: SessionId,
    /// When it was asked for: the session cap runs from about then.
    asked: Instant,
}

/// A session being opened, or opened and waiting to take over (`next`).
#[derive(Debug, Clone, Copy)]
struct Pending {
    id: SessionId,
    asked: Instant,
    next: bool,
    opened: bool,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Not connected, nobody watching.
    Idle,
    /// Waiting out the backoff after a failure.
    Retrying {
        at: Instant,
        retry_in: Duration,
    },
    /// At least one session is open or being opened.
    Live(Live),
    Stopped,
}

#[derive(Debug, Clone, Copy)]
struct Live {
    active: Option<Active>,
    pending: Option<Pending>,
    /// When the stream counts as stalled (`None`: nothing streams yet).
    stall_at: Option<Instant>,
    /// When to open the next session (only while one is active and none pending).
    rotate_at: Option<Instant>,
}

/// A deadline that is due.
enum Due {
    Idle,
    Stall,
    Rotate,
    Retry,
}

/// The lifecycle of one source; see the module docs.
#[derive(Debug)]
pub struct Supervisor {
    config: SupervisorConfig,
    backoff: Backoff,
    subscribers: usize,
    /// Since when nobody watches (on-demand sources only).
    idle_since: Option<Instant>,
    /// Until when the source is wanted with nobody watching ([`Supervisor::hold_until`]).
    hold: Option<Instant>,
    phase: Phase,
    next_id: u64,
    /// The state last reported, so that only changes are.
    reported: Option<SourceState>,
    outputs: VecDeque<Output>,
}

impl Supervisor {
    /// A source with no subscriber yet: idle, or connecting at once when always on.
    pub fn new(config: SupervisorConfig, now: Instant) -> Supervisor {
        let mut supervisor = Supervisor {
            config,
            backoff: Backoff::new(),
            subscribers: 0,
            idle_since: None,
            hold: None,
            phase: Phase::Idle,
            next_id: 0,
            reported: None,
            outputs: VecDeque::new(),
        };
        supervisor.subscribers(now, 0);
        supervisor
    }

    /// The next thing to do; [`Output::WaitUntil`] once there is nothing else.
    pub fn poll_output(&mut self) -> Output {
        self.outputs
            .pop_front()
            .unwrap_or_else(|| Output::WaitUntil(self.next_deadline()))
    }

    /// The current state (the last [`Output::Status`]).
    pub fn state(&self) -> SourceState {
        self.state_now()
    }

    /// Consecutive failures since the last healthy session (the backoff's count).
    pub fn failures(&self) -> u32 {
        self.backoff.failures()
    }

    /// Time passed: fires the deadlines due by `now`.
    pub fn tick(&mut self, now: Instant) {
        self.input(now, |_| {});
    }

    /// The Hub's subscriber count changed.
    pub fn subscribers(&mut self, now: Instant, count: usize) {
        self.input(now, |s| {
            s.subscribers = count;
            s.idle_since = (count == 0 && !s.config.always_on).then(|| s.idle_since.unwrap_or(now));
            if matches!(s.phase, Phase::Idle) && s.wanted(now) {
                s.connect(now, false);
            }
        });
    }

    /// Wants the source until `until` even with nobody watching (an NVR that
    /// connects on a motion event finds the stream already running, with its GOP
    /// cache): connects now if idle; a later `until` than the current hold extends
    /// it, an earlier one changes nothing. The idle grace starts when the hold ends.
    pub fn hold_until(&mut self, now: Instant, until: Instant) {
        self.input(now, |s| {
            if until <= now {
                return;
            }
            s.hold = Some(s.hold.map_or(until, |hold| hold.max(until)));
            if matches!(s.phase, Phase::Idle) {
                s.connect(now, false);
            }
        });
    }

    /// Until when the source is held ([`hold_until`](Supervisor::hold_until)), if
    /// a hold is still running at `now`.
    pub fn held_until(&self, now: Instant) -> Option<Instant> {
        self.hold.filter(|hold| *hold > now)
    }

    /// The session is open. One asked for without `next` streams from now on; a
    /// `next` one waits for [`switched`](Supervisor::switched).
    pub fn opened(&mut self, now: Instant, id: SessionId) {
        self.input(now, |s| {
            let stall_timeout = s.config.stall_timeout;
            let Some(live) = s.live() else { return };
            let Some(pending) = live.pending.as_mut().filter(|p| p.id == id) else {
                return;
            };
            if pending.next {
                pending.opened = true;
                return;
            }
            let asked = pending.asked;
            live.pending = None;
            s.activate(now, id, asked, stall_timeout);
        });
    }

    /// The next session (asked for with `next`, and open) took over: media comes from
    /// it now, and the one it replaces is closed.
    pub fn switched(&mut self, now: Instant, id: SessionId) {
        self.input(now, |s| {
            let stall_timeout = s.config.stall_timeout;
            let Some(live) = s.live() else { return };
            let Some(pending) = live.pending.filter(|p| p.id == id && p.opened) else {
                return;
            };
            live.pending = None;
            if let Some(old) = live.active.take() {
                s.disconnect(old.id, Why::Rotated);
            }
            s.activate(now, id, pending.asked, stall_timeout);
        });
    }

    /// The active session delivered media.
    pub fn media(&mut self, now: Instant, id: SessionId) {
        self.input(now, |s| {
            let stall_timeout = s.config.stall_timeout;
            let Some(live) = s.live().filter(|l| l.active.is_some_and(|a| a.id == id)) else {
                return;
            };
            live.stall_at = Some(now + stall_timeout);
            s.backoff.on_media(now);
        });
    }

    /// Opening the session failed, or the open session failed. `retry_after`: the
    /// server asked to wait at least this long.
    pub fn failed(&mut self, now: Instant, id: SessionId, retry_after: Option<Duration>) {
        self.input(now, |s| s.session_gone(now, id, Why::Failed, retry_after));
    }

    /// The session ended without failing (the server closed it): a next session
    /// replaces it at once.
    pub fn ended(&mut self, now: Instant, id: SessionId) {
        self.input(now, |s| s.session_gone(now, id, Why::Ended, None));
    }

    /// The session failed in a way the task works around itself (RTSP `auto`: UDP
    /// does not work, TCP is next): close it and connect again at once, not counting
    /// a failure.
    pub fn retry_now(&mut self, now: Instant, id: SessionId) {
        self.input(now, |s| {
            let stall_timeout = s.config.stall_timeout;
            let Some(live) = s.live() else { return };
            if live.pending.is_some_and(|p| p.id == id) {
                live.pending = None;
            } else if live.active.is_some_and(|a| a.id == id) {
                live.active = None;
                live.stall_at = live.pending.map(|_| now + stall_timeout);
            } else {
                return;
            }
            let (active, pending) = (live.active.is_some(), live.pending.is_some());
            s.disconnect(id, Why::Failed);
            if !pending {
                s.connect(now, active);
            }
        });
    }

    /// The active session looks unwell (WHEP: its connection dropped): open the next
    /// one `grace` from now unless it [`recovered`](Supervisor::recovered) by then.
    pub fn unwell(&mut self, now: Instant, id: SessionId, grace: Duration) {
        self.input(now, |s| {
            let Some(live) = s.live().filter(|l| l.active.is_some_and(|a| a.id == id)) else {
                return;
            };
            let at = now + grace;
            live.rotate_at = Some(live.rotate_at.map_or(at, |r| r.min(at)));
        });
    }

    /// The active session is well again: rotation goes back to its schedule.
    pub fn recovered(&mut self, now: Instant, id: SessionId) {
        self.input(now, |s| {
            let rotate_after = s.config.rotation.map(|r| r.rotate_after());
            let Some(live) = s.live() else { return };
            let Some(active) = live.active.filter(|a| a.id == id) else {
                return;
            };
            live.rotate_at = rotate_after.map(|after| active.asked + after);
        });
    }

    /// Stops for good: every session is closed.
    pub fn stop(&mut self, now: Instant) {
        self.input(now, |s| {
            s.close_all(Why::Stopped);
            s.phase = Phase::Stopped;
        });
    }

    /// Runs one input in time order: deadlines due before it, the input, then any
    /// deadline it made due at once; reports the state if it changed.
    fn input(&mut self, now: Instant, apply: impl FnOnce(&mut Self)) {
        if matches!(self.phase, Phase::Stopped) {
            return;
        }
        self.fire_due(now);
        apply(self);
        self.fire_due(now);
        let state = self.state_now();
        if self.reported != Some(state) {
            self.reported = Some(state);
            self.outputs.push_back(Output::Status(state));
        }
    }

    fn fire_due(&mut self, now: Instant) {
        while let Some(due) = self.due(now) {
            match due {
                Due::Idle => {
                    self.close_all(Why::Idle);
                    self.backoff.on_session_closed();
                    self.phase = Phase::Idle;
                }
                Due::Stall => {
                    if let Some(live) = self.live() {
                        live.stall_at = None;
                        let id = live.active.map(|a| a.id).or(live.pending.map(|p| p.id));
                        if let Some(id) = id {
                            self.outputs.push_back(Output::Stalled { id });
                        }
                    }
                }
                Due::Rotate => {
                    if let Some(live) = self.live() {
                        live.rotate_at = None;
                    }
                    self.connect(now, true);
                }
                Due::Retry => {
                    self.phase = Phase::Idle;
                    if self.wanted(now) {
                        self.connect(now, false);
                    }
                }
            }
        }
    }

    /// The earliest deadline due by `now`.
    fn due(&self, now: Instant) -> Option<Due> {
        self.deadlines()
            .into_iter()
            .flatten()
            .filter(|(at, _)| *at <= now)
            .min_by_key(|(at, _)| *at)
            .map(|(_, due)| due)
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.deadlines()
            .into_iter()
            .flatten()
            .map(|(at, _)| at)
            .min()
    }

    fn deadlines(&self) -> [Option<(Instant, Due)>; 3] {
        match self.phase {
            Phase::Retrying { at, .. } => [Some((at, Due::Retry)), None, None],
            Phase::Live(live) => [
                self.idle_since.map(|since| {
                    let since = self.hold.map_or(since, |hold| hold.max(since));
                    (since + self.config.idle_grace, Due::Idle)
                }),
                live.stall_at.map(|at| (at, Due::Stall)),
                live.rotate_at
                    .filter(|_| live.active.is_some() && live.pending.is_none())
                    .map(|at| (at, Due::Rotate)),
            ],
            Phase::Idle | Phase::Stopped => [None, None, None],
        }
    }

    fn state_now(&self) -> SourceState {
        match self.phase {
            Phase::Idle => SourceState::Idle,
            Phase::Retrying { retry_in, .. } => SourceState::Retrying { retry_in },
            Phase::Stopped => SourceState::Stopped,
            Phase::Live(Live { active: None, .. }) => SourceState::Connecting,
            Phase::Live(Live { pending: None, .. }) => SourceState::Playing,
            Phase::Live(_) => SourceState::Rotating,
        }
    }

    fn wanted(&self, now: Instant) -> bool {
        self.config.always_on || self.subscribers > 0 || self.held_until(now).is_some()
    }

    fn live(&mut self) -> Option<&mut Live> {
        match &mut self.phase {
            Phase::Live(live) => Some(live),
            _ => None,
        }
    }

    /// Asks for a session (the only one pending).
    fn connect(&mut self, now: Instant, next: bool) {
        let id = SessionId(self.next_id);
        self.next_id += 1;
        let pending = Some(Pending {
            id,
            asked: now,
            next,
            opened: false,
        });
        match &mut self.phase {
            Phase::Live(live) => live.pending = pending,
            phase => {
                *phase = Phase::Live(Live {
                    active: None,
                    pending,
                    stall_at: None,
                    rotate_at: None,
                })
            }
        }
        self.outputs.push_back(Output::Connect { id, next });
    }

    fn disconnect(&mut self, id: SessionId, why: Why) {
        self.outputs.push_back(Output::Disconnect { id, why });
    }

    /// Makes `id` the session media comes from, with a fresh stall and rotation clock.
    fn activate(&mut self, now: Instant, id: SessionId, asked: Instant, stall_timeout: Duration) {
        let rotate_at = self.config.rotation.map(|r| asked + r.rotate_after());
        if let Some(live) = self.live() {
            live.active = Some(Active { id, asked });
            live.stall_at = Some(now + stall_timeout);
            live.rotate_at = rotate_at;
        }
    }

    /// A session failed or ended: the other one carries on if there is one, an ended
    /// active one gets a successor, and otherwise the source backs off.
    fn session_gone(
        &mut self,
        now: Instant,
        id: SessionId,
        why: Why,
        retry_after: Option<Duration>,
    ) {
        let stall_timeout = self.config.stall_timeout;
        let Some(live) = self.live() else { return };
        if live.pending.is_some_and(|p| p.id == id) {
            live.pending = None;
            let rotating = live.active.is_some();
            if rotating {
                live.rotate_at = Some(now + ROTATION_RETRY);
            }
            self.disconnect(id, why);
            if !rotating {
                self.back_off(now, retry_after);
            }
        } else if live.active.is_some_and(|a| a.id == id) {
            live.active = None;
            let successor = live.pending.is_some();
            // Whoever takes over gets the full stall timeout to deliver.
            live.stall_at = Some(now + stall_timeout);
            self.disconnect(id, why);
            match (successor, why) {
                (true, _) => {}
                (false, Why::Ended) => self.connect(now, true),
                (false, _) => self.back_off(now, retry_after),
            }
        }
    }

    fn back_off(&mut self, now: Instant, retry_after: Option<Duration>) {
        let retry_in = self.backoff.on_failure(retry_after);
        self.phase = Phase::Retrying {
            at: now + retry_in,
            retry_in,
        };
    }

    fn close_all(&mut self, why: Why) {
        let Some(live) = self.live() else { return };
        let (pending, active) = (live.pending.take(), live.active.take());
        for id in [pending.map(|p| p.id), active.map(|a| a.id)]
            .into_iter()
            .flatten()
        {
            self.disconnect(id, why);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn on_demand() -> SupervisorConfig {
        SupervisorConfig {
            always_on: false,
            idle_grace: 10 * S,
            stall_timeout: 10 * S,
            rotation: None,
        }
    }

    fn always_on() -> SupervisorConfig {
        SupervisorConfig {
            always_on: true,
            ..on_demand()
        }
    }

    fn capped(max_session: Duration) -> SupervisorConfig {
        SupervisorConfig {
            rotation: Some(Rotation {
                max_session,
                lead: 10 * S,
            }),
            ..always_on()
        }
    }

    /// A supervisor in simulated time: `now` only moves when a test moves it.
    struct Sim {
        sup: Supervisor,
        t0: Instant,
        now: Instant,
    }

    impl Sim {
        fn new(config: SupervisorConfig) -> Sim {
            let t0 = Instant::now();
            Sim {
                sup: Supervisor::new(config, t0),
                t0,
                now: t0,
            }
        }

        /// Seconds since the start, for the times outputs came at.
        fn at(&self) -> Duration {
            self.now - self.t0
        }

        /// The outputs queued now (without the final `WaitUntil`).
        fn take(&mut self) -> Vec<Output> {
            let mut outputs = Vec::new();
            loop {
                match self.sup.poll_output() {
                    Output::WaitUntil(_) => return outputs,
                    output => outputs.push(output),
                }
            }
        }

        fn wait_until(&mut self) -> Option<Duration> {
            match self.sup.poll_output() {
                Output::WaitUntil(at) => at.map(|at| at - self.t0),
                other => panic!("unexpected {other:?}"),
            }
        }

        /// Feeds one input at the current time; returns what it asked for.
        fn on(&mut self, input: impl FnOnce(&mut Supervisor, Instant)) -> Vec<Output> {
            input(&mut self.sup, self.now);
            self.take()
        }

        /// Runs time forward by `by`, ticking at every deadline on the way (as a
        /// task sleeping until `WaitUntil` would); returns the outputs with their times.
        fn run(&mut self, by: Duration) -> Vec<(Duration, Output)> {
            let end = self.now + by;
            let mut seen = Vec::new();
            loop {
                let outputs = self.take();
                seen.extend(outputs.into_iter().map(|o| (self.at(), o)));
                match self.sup.poll_output() {
                    Output::WaitUntil(Some(at)) if at <= end => {
                        self.now = at;
                        self.sup.tick(at);
                    }
                    Output::WaitUntil(_) => break,
                    other => seen.push((self.at(), other)),
                }
            }
            self.now = end;
            seen
        }

        /// Runs time forward by `by`, feeding media from `id` every 100 ms.
        fn stream(&mut self, id: SessionId, by: Duration) -> Vec<(Duration, Output)> {
            let mut seen = Vec::new();
            let step = Duration::from_millis(100);
            let mut left = by;
            while left > Duration::ZERO {
                let d = step.min(left);
                seen.extend(self.run(d));
                self.sup.media(self.now, id);
                seen.extend(self.take().into_iter().map(|o| (self.at(), o)));
                left -= d;
            }
            seen
        }

        /// Connects the session the queued outputs ask for.
        fn open_queued(&mut self) -> SessionId {
            let asked = self.take();
            self.open(&asked)
        }

        /// Connects a session that was asked for, returning its id.
        fn open(&mut self, outputs: &[Output]) -> SessionId {
            let id = connected(outputs);
            self.on(|s, now| s.opened(now, id));
            id
        }
    }

    fn connected(outputs: &[Output]) -> SessionId {
        match outputs.iter().find(|o| matches!(o, Output::Connect { .. })) {
            Some(Output::Connect { id, .. }) => *id,
            _ => panic!("no Connect in {outputs:?}"),
        }
    }

    fn connects(outputs: &[(Duration, Output)]) -> Vec<(Duration, bool)> {
        outputs
            .iter()
            .filter_map(|(at, o)| match o {
                Output::Connect { next, .. } => Some((*at, *next)),
                _ => None,
            })
            .collect()
    }

    fn only(outputs: Vec<(Duration, Output)>) -> Vec<Output> {
        outputs.into_iter().map(|(_, o)| o).collect()
    }

    fn retrying(secs: u64) -> Output {
        Output::Status(SourceState::Retrying {
            retry_in: Duration::from_secs(secs),
        })
    }

    fn disconnects(outputs: &[(Duration, Output)]) -> Vec<(Duration, Why)> {
        outputs
            .iter()
            .filter_map(|(at, o)| match o {
                Output::Disconnect { why, .. } => Some((*at, *why)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_hold_starts_an_idle_source_and_the_grace_runs_from_its_end() {
        let mut sim = Sim::new(on_demand());
        sim.take();
        let asked = sim.on(|s, now| s.hold_until(now, now + 60 * S));
        assert!(
            matches!(asked[0], Output::Connect { next: false, .. }),
            "{asked:?}"
        );
        let id = sim.open(&asked);
        assert_eq!(sim.sup.state(), SourceState::Playing);
        let held = sim.stream(id, 60 * S);
        assert!(
            disconnects(&held).is_empty(),
            "held with nobody watching: {held:?}"
        );
        assert_eq!(sim.wait_until(), Some(70 * S), "idle grace after the hold");
        let seen = sim.stream(id, 20 * S);
        assert_eq!(disconnects(&seen), [(70 * S, Why::Idle)]);
        assert_eq!(sim.sup.state(), SourceState::Idle);
        assert_eq!(sim.sup.held_until(sim.now), None);
    }

    #[test]
    fn a_hold_during_the_hold_extends_it_and_an_earlier_one_does_not_shorten_it() {
        let mut sim = Sim::new(on_demand());
        sim.take();
        let asked = sim.on(|s, now| s.hold_until(now, now + 60 * S));
        let id = sim.open(&asked);
        sim.stream(id, 30 * S);
        let extended = sim.on(|s, now| s.hold_until(now, now + 60 * S));
        assert!(
            !extended.iter().any(|o| matches!(o, Output::Connect { .. })),
            "an extension opens no session: {extended:?}"
        );
        sim.stream(id, 10 * S);
        sim.on(|s, now| s.hold_until(now, now + S));
        assert_eq!(sim.sup.held_until(sim.now), Some(sim.t0 + 90 * S));
        let seen = sim.stream(id, 100 * S);
        assert_eq!(disconnects(&seen), [(100 * S, Why::Idle)]);
    }

    #[test]
    fn a_reader_during_the_hold_keeps_the_source_after_it() {
        let mut sim = Sim::new(on_demand());
        sim.take();
        let asked = sim.on(|s, now| s.hold_until(now, now + 60 * S));
        let id = sim.open(&asked);
        sim.stream(id, 20 * S);
        sim.on(|s, now| s.subscribers(now, 1));
        let seen = sim.stream(id, 180 * S);
        assert!(
            disconnects(&seen).is_empty(),
            "the reader keeps it: {seen:?}"
        );
        sim.on(|s, now| s.subscribers(now, 0));
        let seen = sim.stream(id, 20 * S);
        assert_eq!(
            disconnects(&seen),
            [(210 * S, Why::Idle)],
            "grace from the reader leaving"
        );
    }

    #[test]
    fn a_reader_leaving_during_the_hold_closes_only_after_the_hold_and_grace() {
        let mut sim = Sim::new(on_demand());
        let asked = sim.on(|s, now| s.subscribers(now, 1));
        let id = sim.open(&asked);
        sim.stream(id, 5 * S);
        sim.on(|s, now| s.hold_until(now, now + 60 * S));
        sim.stream(id, 5 * S);
        sim.on(|s, now| s.subscribers(now, 0));
        let seen = sim.stream(id, 100 * S);
        assert_eq!(disconnects(&seen), [(75 * S, Why::Idle)]);
    }

    #[test]
    fn a_held_source_rotates_across_the_cap() {
        let mut sim = Sim::new(SupervisorConfig {
            always_on: false,
            ..capped(30 * S)
        });
        sim.take();
        let asked = sim.on(|s, now| s.hold_until(now, now + 60 * S));
        let id = sim.open(&asked);
        let seen = sim.stream(id, 20 * S);
        let rotations = connects(&seen);
        assert_eq!(
            rotations,
            [(20 * S, true)],
            "the next session before the cap"
        );
        assert!(disconnects(&seen).is_empty());
    }

    #[test]
    fn a_hold_that_already_ended_changes_nothing() {
        let mut sim = Sim::new(on_demand());
        sim.take();
        assert!(sim.on(|s, now| s.hold_until(now, now)).is_empty());
        assert_eq!(sim.sup.state(), SourceState::Idle);
    }

    #[test]
    fn on_demand_waits_for_the_first_subscriber() {
        let mut sim = Sim::new(on_demand());
        assert_eq!(sim.take(), [Output::Status(SourceState::Idle)]);
        assert_eq!(sim.wait_until(), None, "nothing to wait for");
        assert!(sim.run(3600 * S).is_empty(), "no subscriber, no session");

        let outputs = sim.on(|s, now| s.subscribers(now, 1));
        let id = connected(&outputs);
        assert_eq!(
            outputs,
            [
                Output::Connect { id, next: false },
                Output::Status(SourceState::Connecting)
            ]
        );
        assert_eq!(
            sim.on(|s, now| s.opened(now, id)),
            [Output::Status(SourceState::Playing)]
        );
    }

    #[test]
    fn the_last_subscriber_leaving_closes_after_the_grace() {
        let mut sim = Sim::new(on_demand());
        let asked = sim.on(|s, now| s.subscribers(now, 2));
        let id = sim.open(&asked);
        sim.stream(id, 5 * S);
        assert!(sim.on(|s, now| s.subscribers(now, 0)).is_empty());
        assert_eq!(
            sim.wait_until(),
            Some(15 * S),
            "grace from the last leaving"
        );
        let seen = sim.stream(id, 10 * S);
        assert_eq!(
            seen,
            [
                (15 * S, Output::Disconnect { id, why: Why::Idle }),
                (15 * S, Output::Status(SourceState::Idle))
            ]
        );
        assert_eq!(sim.sup.failures(), 0, "going idle is not a failure");
        assert_eq!(sim.wait_until(), None);

        // The next subscriber opens a new session.
        let asked = sim.on(|s, now| s.subscribers(now, 1));
        assert_ne!(connected(&asked), id);
    }

    #[test]
    fn a_returning_subscriber_cancels_the_idle_close() {
        let mut sim = Sim::new(on_demand());
        let asked = sim.on(|s, now| s.subscribers(now, 1));
        let id = sim.open(&asked);
        sim.on(|s, now| s.subscribers(now, 0));
        sim.stream(id, 9 * S);
        assert!(sim.on(|s, now| s.subscribers(now, 1)).is_empty());
        assert!(sim.stream(id, 60 * S).is_empty(), "stays connected");
        assert_eq!(sim.sup.state(), SourceState::Playing);
    }

    #[test]
    fn a_subscriber_leaving_while_connecting_closes_the_opening_session() {
        let mut sim = Sim::new(on_demand());
        let id = connected(&sim.on(|s, now| s.subscribers(now, 1)));
        sim.on(|s, now| s.subscribers(now, 0));
        assert_eq!(
            only(sim.run(10 * S)),
            [
                Output::Disconnect { id, why: Why::Idle },
                Output::Status(SourceState::Idle)
            ]
        );
        assert!(
            sim.on(|s, now| s.opened(now, id)).is_empty(),
            "a late open of a closed session is ignored"
        );
    }

    #[test]
    fn always_on_connects_at_once_and_never_idles() {
        let mut sim = Sim::new(always_on());
        let outputs = sim.take();
        let id = connected(&outputs);
        assert_eq!(outputs[1], Output::Status(SourceState::Connecting));
        sim.on(|s, now| s.opened(now, id));
        sim.on(|s, now| s.subscribers(now, 1));
        sim.on(|s, now| s.subscribers(now, 0));
        assert!(sim.stream(id, 600 * S).is_empty());
    }

    #[test]
    fn failures_back_off_in_steps() {
        let mut sim = Sim::new(always_on());
        let mut asked = sim.take();
        let mut delays = Vec::new();
        for _ in 0..12 {
            let id = connected(&asked);
            let outputs = sim.on(|s, now| s.failed(now, id, None));
            assert_eq!(
                outputs[0],
                Output::Disconnect {
                    id,
                    why: Why::Failed
                }
            );
            let Some(Output::Status(SourceState::Retrying { retry_in })) = outputs.get(1) else {
                panic!("{outputs:?}");
            };
            delays.push(retry_in.as_secs());
            let failed_at = sim.at();
            // No attempt before the wait is over, one at its end.
            let seen = sim.run(*retry_in);
            assert_eq!(connects(&seen), [(failed_at + *retry_in, false)]);
            asked = only(seen);
        }
        assert_eq!(delays, [1, 1, 1, 1, 1, 5, 5, 5, 5, 5, 10, 10]);
        assert_eq!(sim.sup.failures(), 12);
    }

    #[test]
    fn a_healthy_session_resets_the_backoff_and_a_short_one_does_not() {
        let mut sim = Sim::new(always_on());
        let mut asked = sim.take();
        for _ in 0..6 {
            let id = connected(&asked);
            sim.on(|s, now| s.failed(now, id, None));
            asked = only(sim.run(5 * S));
        }
        let id = sim.open(&asked);
        sim.stream(id, 30 * S);
        assert_eq!(sim.on(|s, now| s.failed(now, id, None))[1], retrying(5));

        let asked = only(sim.run(5 * S));
        let id = sim.open(&asked);
        sim.stream(id, 61 * S);
        assert_eq!(sim.on(|s, now| s.failed(now, id, None))[1], retrying(1));
        assert_eq!(sim.sup.failures(), 1);
    }

    #[test]
    fn retry_after_lengthens_the_wait() {
        let mut sim = Sim::new(always_on());
        let id = connected(&sim.take());
        assert_eq!(
            sim.on(|s, now| s.failed(now, id, Some(7 * S)))[1],
            retrying(7)
        );
        assert_eq!(
            connects(&sim.run(7 * S)),
            [(7 * S, false)],
            "not after the backoff's 1 s"
        );
    }

    #[test]
    fn nobody_watching_after_a_failure_goes_idle_instead_of_retrying() {
        let mut sim = Sim::new(on_demand());
        let id = connected(&sim.on(|s, now| s.subscribers(now, 1)));
        sim.on(|s, now| s.failed(now, id, None));
        sim.on(|s, now| s.subscribers(now, 0));
        assert_eq!(
            only(sim.run(S)),
            [Output::Status(SourceState::Idle)],
            "the wait ends in Idle, no attempt"
        );
    }

    #[test]
    fn a_stalled_session_is_reported_and_fails() {
        let mut sim = Sim::new(always_on());
        let id = sim.open_queued();
        sim.stream(id, 30 * S);
        let seen = sim.run(20 * S);
        assert_eq!(
            seen,
            [(40 * S, Output::Stalled { id })],
            "10 s after the last media"
        );
        assert_eq!(sim.wait_until(), None, "reported once");
        assert_eq!(sim.on(|s, now| s.failed(now, id, None))[1], retrying(1));

        // A session that never delivers stalls `stall_timeout` after it opened.
        let asked = only(sim.run(S));
        let id = sim.open(&asked);
        assert_eq!(only(sim.run(10 * S)), [Output::Stalled { id }]);
    }

    #[test]
    fn retry_now_reconnects_without_counting_a_failure() {
        let mut sim = Sim::new(always_on());
        let id = connected(&sim.take());
        let outputs = sim.on(|s, now| s.retry_now(now, id));
        let again = connected(&outputs);
        assert_eq!(
            outputs,
            [
                Output::Disconnect {
                    id,
                    why: Why::Failed
                },
                Output::Connect {
                    id: again,
                    next: false
                }
            ],
            "still Connecting"
        );
        assert_eq!(sim.sup.failures(), 0);
    }

    #[test]
    fn an_ended_session_is_replaced_at_once() {
        let mut sim = Sim::new(always_on());
        let id = sim.open_queued();
        sim.stream(id, 5 * S);
        let outputs = sim.on(|s, now| s.ended(now, id));
        let next = connected(&outputs);
        assert_eq!(
            outputs,
            [
                Output::Disconnect {
                    id,
                    why: Why::Ended
                },
                Output::Connect {
                    id: next,
                    next: true
                },
                Output::Status(SourceState::Connecting)
            ]
        );
        sim.run(S);
        sim.on(|s, now| s.opened(now, next));
        assert_eq!(
            sim.sup.state(),
            SourceState::Connecting,
            "until it switches"
        );
        assert_eq!(
            sim.on(|s, now| s.switched(now, next)),
            [Output::Status(SourceState::Playing)]
        );
        assert_eq!(sim.sup.failures(), 0);
    }

    #[test]
    fn rotation_opens_the_next_session_the_lead_before_the_cap() {
        let mut sim = Sim::new(capped(60 * S));
        let asked = sim.take();
        // Opening took 2 s: the cap runs from the request.
        sim.run(2 * S);
        let first = sim.open(&asked);
        let seen = sim.stream(first, 53 * S);
        let next = connected(&only(seen.clone()));
        assert_eq!(
            seen,
            [
                (
                    50 * S,
                    Output::Connect {
                        id: next,
                        next: true
                    }
                ),
                (50 * S, Output::Status(SourceState::Rotating))
            ]
        );
        // It opens, and switches at 55 s: the old one goes, the cap runs from 50 s.
        assert!(
            sim.on(|s, now| s.opened(now, next)).is_empty(),
            "not yet switched"
        );
        assert_eq!(
            sim.on(|s, now| s.switched(now, next)),
            [
                Output::Disconnect {
                    id: first,
                    why: Why::Rotated
                },
                Output::Status(SourceState::Playing)
            ]
        );
        assert_eq!(connects(&sim.stream(next, 60 * S)), [(100 * S, true)]);
    }

    #[test]
    fn a_short_cap_rotates_at_half_of_it() {
        let mut sim = Sim::new(capped(6 * S));
        let first = sim.open_queued();
        assert_eq!(connects(&sim.stream(first, 5 * S)), [(3 * S, true)]);
        assert_eq!(
            Rotation {
                max_session: 30 * S,
                lead: 10 * S
            }
            .rotate_after(),
            20 * S
        );
    }

    #[test]
    fn a_failed_next_session_is_retried_while_the_active_one_streams() {
        let mut sim = Sim::new(capped(30 * S));
        let first = sim.open_queued();
        let next = connected(&only(sim.stream(first, 20 * S)));
        assert_eq!(
            sim.on(|s, now| s.failed(now, next, Some(30 * S))),
            [
                Output::Disconnect {
                    id: next,
                    why: Why::Failed
                },
                Output::Status(SourceState::Playing)
            ],
            "the active session is left alone"
        );
        assert_eq!(sim.sup.failures(), 0, "no backoff while media flows");
        let seen = sim.stream(first, 2 * S);
        assert_eq!(connects(&seen), [(20 * S + ROTATION_RETRY, true)]);
        // It opens but ends before its switch point: retried again.
        let again = connected(&only(seen));
        sim.on(|s, now| s.opened(now, again));
        let outputs = sim.on(|s, now| s.ended(now, again));
        assert_eq!(
            outputs[0],
            Output::Disconnect {
                id: again,
                why: Why::Ended
            }
        );
        let at = sim.at();
        assert_eq!(
            connects(&sim.stream(first, 2 * S)),
            [(at + ROTATION_RETRY, true)]
        );
    }

    #[test]
    fn the_active_session_failing_during_rotation_hands_over_to_the_next() {
        let mut sim = Sim::new(capped(30 * S));
        let first = sim.open_queued();
        let next = connected(&only(sim.stream(first, 20 * S)));
        assert_eq!(
            sim.on(|s, now| s.failed(now, first, None)),
            [
                Output::Disconnect {
                    id: first,
                    why: Why::Failed
                },
                Output::Status(SourceState::Connecting)
            ],
            "no backoff: the next session is on its way"
        );
        sim.run(2 * S);
        sim.on(|s, now| s.opened(now, next));
        assert_eq!(
            sim.on(|s, now| s.switched(now, next)),
            [Output::Status(SourceState::Playing)]
        );
        assert_eq!(sim.sup.failures(), 0);

        // The active one ending (the server's cap) during a rotation: the same.
        let third = connected(&only(sim.stream(next, 20 * S)));
        let outputs = sim.on(|s, now| s.ended(now, next));
        assert!(
            !outputs.iter().any(|o| matches!(o, Output::Connect { .. })),
            "the next session is already on its way: {outputs:?}"
        );
        // ... and it has the stall timeout to take over, then the source backs off.
        sim.on(|s, now| s.opened(now, third));
        assert_eq!(only(sim.run(10 * S)), [Output::Stalled { id: third }]);
        assert_eq!(sim.on(|s, now| s.failed(now, third, None))[1], retrying(1));
    }

    #[test]
    fn an_unwell_session_is_replaced_after_the_grace_unless_it_recovers() {
        let mut sim = Sim::new(capped(60 * S));
        let first = sim.open_queued();
        sim.stream(first, 5 * S);
        sim.on(|s, now| s.unwell(now, first, 2 * S));
        sim.stream(first, S);
        sim.on(|s, now| s.recovered(now, first));
        assert_eq!(
            connects(&sim.stream(first, 50 * S)),
            [(50 * S, true)],
            "back on the cap's schedule"
        );

        // Without a cap, an unwell session is replaced after the grace too.
        let mut sim = Sim::new(always_on());
        let first = sim.open_queued();
        sim.on(|s, now| s.unwell(now, first, 2 * S));
        assert_eq!(connects(&sim.stream(first, 5 * S)), [(2 * S, true)]);
    }

    #[test]
    fn stop_closes_every_session_and_ends_everything() {
        let mut sim = Sim::new(capped(30 * S));
        let first = sim.open_queued();
        let next = connected(&only(sim.stream(first, 20 * S)));
        let mut outputs = sim.on(|s, now| s.stop(now));
        assert_eq!(outputs.pop(), Some(Output::Status(SourceState::Stopped)));
        outputs.sort_by_key(|o| match o {
            Output::Disconnect { id, .. } => *id,
            _ => panic!("{o:?}"),
        });
        assert_eq!(
            outputs,
            [
                Output::Disconnect {
                    id: first,
                    why: Why::Stopped
                },
                Output::Disconnect {
                    id: next,
                    why: Why::Stopped
                }
            ]
        );
        assert!(sim.on(|s, now| s.subscribers(now, 3)).is_empty());
        assert_eq!(sim.wait_until(), None);
    }
}
