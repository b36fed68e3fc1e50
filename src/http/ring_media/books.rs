//! What the Ring media routes keep between requests: the settings they were
//! configured with, the snapshot cache and the clip folder's bookkeeping. Built
//! with the app state; knows nothing of HTTP.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;

use crate::config::RingSettings;

/// The `[ring]` media keys (their defaults when `[ring]` is absent).
#[derive(Clone, Debug)]
pub struct MediaSettings {
    pub snapshot_cache: Duration,
    pub snapshot_window: Duration,
    pub clips_dir: PathBuf,
    pub clips_max_age: Duration,
    pub clips_max_bytes: u64,
    pub history_max_pages: usize,
}

/// One cached image.
#[derive(Clone)]
pub struct CachedSnapshot {
    pub fetched: Instant,
    pub bytes: Bytes,
    pub content_type: String,
    pub timestamp: Option<String>,
    pub origin: Option<&'static str>,
}

/// Shared by the handlers; cheap to clone.
#[derive(Clone)]
pub struct RingMedia {
    pub settings: Arc<MediaSettings>,
    snapshots: Arc<Mutex<HashMap<String, CachedSnapshot>>>,
    /// One fetch per stream and size at a time: the rest wait and take its image.
    fetching: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
    /// One prune at a time.
    pub pruning: Arc<tokio::sync::Mutex<()>>,
    /// Clip names being downloaded (a second request for one gets 409).
    downloading: Arc<Mutex<std::collections::HashSet<String>>>,
}

/// Held while a clip downloads; frees its name when dropped.
pub struct Downloading {
    names: Arc<Mutex<std::collections::HashSet<String>>>,
    name: String,
}

impl Drop for Downloading {
    fn drop(&mut self) {
        lock(&self.names).remove(&self.name);
    }
}

/// Most cached images (streams × sizes).
const MAX_CACHED: usize = 256;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl RingMedia {
    pub fn new(ring: Option<&RingSettings>, base: &Path) -> RingMedia {
        let settings = match ring {
            Some(ring) => MediaSettings {
                snapshot_cache: ring.snapshot_cache,
                snapshot_window: ring.snapshot_window,
                clips_dir: base.join(ring.clips_dir.as_deref().unwrap_or(Path::new("clips"))),
                clips_max_age: ring.clips_max_age,
                clips_max_bytes: ring.clips_max_bytes,
                history_max_pages: ring.history_max_pages.max(1),
            },
            None => MediaSettings {
                snapshot_cache: Duration::from_secs(10),
                snapshot_window: Duration::from_secs(300),
                clips_dir: base.join("clips"),
                clips_max_age: Duration::from_secs(7 * 24 * 3600),
                clips_max_bytes: 1 << 30,
                history_max_pages: 20,
            },
        };
        RingMedia {
            settings: Arc::new(settings),
            snapshots: Arc::default(),
            fetching: Arc::default(),
            pruning: Arc::default(),
            downloading: Arc::default(),
        }
    }

    /// Claims `name` for a download; None while another download has it.
    pub fn start_download(&self, name: &str) -> Option<Downloading> {
        lock(&self.downloading)
            .insert(name.to_owned())
            .then(|| Downloading {
                names: self.downloading.clone(),
                name: name.to_owned(),
            })
    }

    /// The cached image for `key` if it is younger than `snapshot_cache`.
    pub fn cached(&self, key: &str, now: Instant) -> Option<CachedSnapshot> {
        lock(&self.snapshots)
            .get(key)
            .filter(|c| now.duration_since(c.fetched) < self.settings.snapshot_cache)
            .cloned()
    }

    pub fn store(&self, key: &str, snapshot: CachedSnapshot) {
        let ttl = self.settings.snapshot_cache;
        let mut cache = lock(&self.snapshots);
        if cache.len() >= MAX_CACHED {
            let now = Instant::now();
            cache.retain(|_, c| now.duration_since(c.fetched) < ttl);
        }
        if cache.len() < MAX_CACHED {
            cache.insert(key.to_owned(), snapshot);
        }
    }

    pub fn fetch_lock(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = lock(&self.fetching);
        if locks.len() >= MAX_CACHED {
            locks.retain(|_, l| Arc::strong_count(l) > 1);
        }
        locks.entry(key.to_owned()).or_default().clone()
    }
}

/// A clip in the folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClipFile {
    pub name: String,
    pub bytes: u64,
    pub modified: SystemTime,
}

/// A name the clip routes accept: letters, digits, `.`, `-`, `_`, ending `.mp4`,
/// no leading dot (so never `..` or a path).
pub fn valid_clip_name(name: &str) -> bool {
    name.len() <= 200
        && name.ends_with(".mp4")
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// The clips in `dir`, newest first (a missing folder has none).
pub fn list_clips(dir: &Path) -> Vec<ClipFile> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut clips: Vec<ClipFile> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let meta = entry.metadata().ok()?;
            (meta.is_file() && valid_clip_name(&name)).then(|| ClipFile {
                name,
                bytes: meta.len(),
                modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            })
        })
        .collect();
    clips.sort_by(|a, b| b.modified.cmp(&a.modified).then(a.name.cmp(&b.name)));
    clips
}

/// `.part` files (downloads cut off by a restart) older than `age`.
pub fn stale_parts(dir: &Path, now: SystemTime, age: Duration) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_string_lossy().ends_with(".mp4.part"))
        .filter(|entry| {
            entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|modified| now.duration_since(modified).unwrap_or_default() > age)
        })
        .map(|entry| entry.path())
        .collect()
}

/// Which clips to delete: those older than `max_age`, then the oldest while the
/// rest hold more than `max_bytes` (the newest is always kept). `clips` newest first.
pub fn prune_plan(
    clips: &[ClipFile],
    now: SystemTime,
    max_age: Duration,
    max_bytes: u64,
) -> Vec<String> {
    let mut delete = Vec::new();
    let mut total = 0u64;
    for (i, clip) in clips.iter().enumerate() {
        let age = now.duration_since(clip.modified).unwrap_or_default();
        if i > 0 && (age > max_age || total + clip.bytes > max_bytes) {
            delete.push(clip.name.clone());
        } else {
            total += clip.bytes;
        }
    }
    delete
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_names_cannot_leave_the_folder() {
        assert!(valid_clip_name(
            "ava1.ring.device.front-door-1700000000000-4000.mp4"
        ));
        for bad in [
            "../x.mp4",
            ".hidden.mp4",
            "a/b.mp4",
            "x.mp4.part",
            "x.txt",
            "a b.mp4",
        ] {
            assert!(!valid_clip_name(bad), "{bad}");
        }
    }

    #[test]
    fn a_clip_name_is_downloaded_once_at_a_time() {
        let media = RingMedia::new(None, Path::new("/tmp"));
        let first = media.start_download("a.mp4").expect("free");
        assert!(media.start_download("a.mp4").is_none());
        assert!(media.start_download("b.mp4").is_some());
        drop(first);
        assert!(media.start_download("a.mp4").is_some());
        assert_eq!(media.settings.clips_dir, Path::new("/tmp/clips"));
    }

    #[test]
    fn pruning_drops_old_then_oldest_beyond_the_size() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let clip = |name: &str, bytes, age| ClipFile {
            name: name.into(),
            bytes,
            modified: now - Duration::from_secs(age),
        };
        let clips = [
            clip("new", 60, 0),
            clip("mid", 30, 10),
            clip("older", 30, 20),
            clip("ancient", 1, 1000),
        ];
        assert_eq!(
            prune_plan(&clips, now, Duration::from_secs(100), 100),
            ["older", "ancient"]
        );
        assert_eq!(
            prune_plan(&clips, now, Duration::from_secs(5000), 1000),
            Vec::<String>::new()
        );
        // The newest stays even when it alone is too big.
        assert_eq!(
            prune_plan(&clips[..1], now, Duration::ZERO, 1),
            Vec::<String>::new()
        );
    }
}
