//! The restart gate: after a source restart a video track publishes nothing until
//! the new session's first keyframe (a camera that reconnects mid-GOP sends
//! P-frames that reference pictures of the old session). The frames held back are
//! counted as dropped and a keyframe is requested once; audio keeps flowing.

use super::StreamIngest;

/// Whether a video track may publish after its source restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RestartGate {
    Open,
    /// Dropping frames until the new session's first keyframe; `requested` once
    /// a keyframe was asked of the source.
    AwaitingKeyframe {
        requested: bool,
    },
}

impl StreamIngest {
    /// Whether track `index` drops this frame because its source restarted and
    /// the new session's first keyframe has not come yet (see the module docs).
    pub(super) fn held_for_keyframe(&mut self, index: usize, keyframe: bool) -> bool {
        let state = &mut self.tracks[index];
        match state.restart_gate {
            RestartGate::Open => false,
            RestartGate::AwaitingKeyframe { .. } if keyframe => {
                state.restart_gate = RestartGate::Open;
                false
            }
            RestartGate::AwaitingKeyframe { requested } => {
                self.stats.dropped_frames += 1;
                if !requested {
                    tracing::debug!(stream = %self.hub.name(), track = state.info.id.get(), "source restarted mid-GOP: dropping video until its first keyframe");
                    state.restart_gate = RestartGate::AwaitingKeyframe { requested: true };
                    self.hub.request_keyframe();
                }
                true
            }
        }
    }
}
