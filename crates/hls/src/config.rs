//! The `[hls]` section of the gateway's config.

use std::time::Duration;

use serde::Deserialize;

use crate::segmenter::SegmenterConfig;

/// HLS settings; every field has a default, so an empty `[hls]` section is valid.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HlsConfig {
    /// Target segment duration in seconds (segments are cut at the next keyframe).
    pub segment_target: f64,
    /// Target partial-segment duration in seconds (LL-HLS `PART-TARGET`).
    pub part_target: f64,
    /// Finished segments kept per stream.
    pub window: usize,
    /// Hard cap on the bytes one stream's muxer holds.
    pub max_bytes: usize,
    /// Seconds a muxer keeps running after the last viewer request.
    pub idle_grace: f64,
    /// Seconds to wait for a source's codec parameters before giving up.
    pub ready_timeout: f64,
}

impl Default for HlsConfig {
    fn default() -> Self {
        HlsConfig {
            segment_target: 2.0,
            part_target: 0.2,
            window: 7,
            max_bytes: 64 << 20,
            idle_grace: 30.0,
            ready_timeout: 20.0,
        }
    }
}

/// A setting out of range.
#[non_exhaustive]
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum HlsConfigError {
    #[error("hls.{field} = {value}: {why}")]
    OutOfRange {
        field: &'static str,
        value: String,
        why: &'static str,
    },
}

fn check(
    ok: bool,
    field: &'static str,
    value: impl ToString,
    why: &'static str,
) -> Result<(), HlsConfigError> {
    if ok {
        Ok(())
    } else {
        Err(HlsConfigError::OutOfRange {
            field,
            value: value.to_string(),
            why,
        })
    }
}

impl HlsConfig {
    pub fn validate(&self) -> Result<(), HlsConfigError> {
        check(
            (0.5..=30.0).contains(&self.segment_target),
            "segment_target",
            self.segment_target,
            "must be 0.5 to 30 s",
        )?;
        check(
            self.part_target >= 0.05 && self.part_target <= self.segment_target / 2.0,
            "part_target",
            self.part_target,
            "must be at least 0.05 s and at most half the segment target",
        )?;
        check(
            (2..=100).contains(&self.window),
            "window",
            self.window,
            "must be 2 to 100 segments",
        )?;
        check(
            self.max_bytes >= 1 << 20,
            "max_bytes",
            self.max_bytes,
            "must be at least 1 MiB",
        )?;
        check(
            (0.0..=3600.0).contains(&self.idle_grace),
            "idle_grace",
            self.idle_grace,
            "must be 0 to 3600 s",
        )?;
        check(
            (0.1..=600.0).contains(&self.ready_timeout),
            "ready_timeout",
            self.ready_timeout,
            "must be 0.1 to 600 s",
        )?;
        Ok(())
    }

    pub fn segmenter(&self) -> SegmenterConfig {
        SegmenterConfig {
            segment_target: Duration::from_secs_f64(self.segment_target),
            part_target: Duration::from_secs_f64(self.part_target),
            window: self.window,
            max_bytes: self.max_bytes,
            ..SegmenterConfig::default()
        }
    }

    pub fn idle_grace(&self) -> Duration {
        Duration::from_secs_f64(self.idle_grace)
    }

    pub fn ready_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.ready_timeout)
    }

    /// How long a blocking playlist reload or a hinted part may be held: three
    /// target durations, as RFC 8216bis suggests.
    pub fn blocking_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.segment_target * 3.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_name_the_field() {
        HlsConfig::default().validate().unwrap();
        let bad = HlsConfig {
            part_target: 1.5,
            ..Default::default()
        };
        assert!(matches!(
            bad.validate(),
            Err(HlsConfigError::OutOfRange {
                field: "part_target",
                ..
            })
        ));
        let bad = HlsConfig {
            window: 1,
            ..Default::default()
        };
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("hls.window = 1"));
    }
}
