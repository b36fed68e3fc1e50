//! The media and history calls of [`RingClient`] (bodies and pages: `crate::media`).
//!
//! - Snapshots: the POST answers `303` to a pre-signed URL, fetched **without** the
//!   bearer token (the URL carries its own signature; it is never logged). 425
//!   RECORDING_NOT_READY is retried with the request loop's backoff.
//! - Clips: the MP4 is streamed to `PATH.part` chunk by chunk (bounded memory), then
//!   renamed. A `301` is followed (with the token only to the API's own origin). A
//!   body cut short is resumed with `Range: bytes=N-` when the answer allowed it
//!   (a length was announced), else the download starts over.
//! - History and subscriptions: `links.next` followed as an opaque link, resolved
//!   against the API base (a bare `?query` against the page it came from), never to
//!   another origin (the token stays with Ring); stops on a missing link, empty `data`
//!   or `max_pages`.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, CONTENT_RANGE, CONTENT_TYPE, LOCATION, RANGE};
use reqwest::Method;
use tokio::io::AsyncWriteExt;
use url::Url;

use super::RingClient;
use crate::error::RingError;
use crate::http::{retry_after, transport_detail, Answer, Body, Request};
use crate::ids::{AccountId, DeviceId};
use crate::media::{
    self, ClipDownload, ClipRequest, HistoryEvent, ImageFormat, MediaHeaders, Snapshot,
    SnapshotRequest, Subscription,
};

/// Largest snapshot image read.
const MAX_IMAGE_BYTES: usize = 16 * 1024 * 1024;
/// Largest clip written (15 min of 1080p is well below).
const MAX_CLIP_BYTES: u64 = 2 * 1024 * 1024 * 1024;
/// Redirects followed by one media request.
const MAX_REDIRECTS: usize = 3;
/// Pages of subscriptions followed at most.
const MAX_SUBSCRIPTION_PAGES: usize = 40;

/// A device's history as far as it was read.
#[derive(Debug, Clone)]
pub struct History {
    pub events: Vec<HistoryEvent>,
    pub pages: usize,
    /// False when `max_pages` stopped the paging while Ring still had a next link.
    pub complete: bool,
}

impl RingClient {
    /// The image `request` asks for, downloaded from the pre-signed URL.
    pub async fn snapshot(
        &self,
        account: &AccountId,
        device: &DeviceId,
        request: &SnapshotRequest,
    ) -> Result<Snapshot, RingError> {
        let body = serde_json::to_vec(&request.body(SystemTime::now())?)
            .map_err(|e| RingError::Malformed(format!("request body: {e}")))?;
        let url = self.api(&["devices", device.as_str(), "media", "image", "download"]);
        let what = "POST /v1/devices/{id}/media/image/download";
        let answer = self.call_not_ready(account, what, &url, body).await?;
        match answer.status {
            200 => Ok(Snapshot {
                content_type: content_type(&answer.headers, request.format),
                media: MediaHeaders::from_headers(&answer.headers),
                bytes: answer.body,
            }),
            301..=303 | 307 | 308 => {
                let location = location(&answer.headers, &url, "snapshot redirect")?;
                self.presigned(&location, request.format).await
            }
            _ => Err(RingError::from_api_answer(answer.status, &answer.body)),
        }
    }

    /// GETs the pre-signed image URL with no Authorization header.
    async fn presigned(&self, url: &Url, format: ImageFormat) -> Result<Snapshot, RingError> {
        let what = "snapshot download";
        let http = &self.inner.http;
        let mut response = http
            .reqwest()
            .get(url.clone())
            .timeout(http.timeout())
            .send()
            .await
            .map_err(|e| transport(what, http.timeout(), e))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| transport(what, http.timeout(), e))?
        {
            if bytes.len() + chunk.len() > MAX_IMAGE_BYTES {
                return Err(RingError::BodyTooLarge {
                    what,
                    limit: MAX_IMAGE_BYTES,
                });
            }
            bytes.extend_from_slice(&chunk);
        }
        if !(200..300).contains(&status) {
            return Err(RingError::from_api_answer(status, &bytes));
        }
        Ok(Snapshot {
            content_type: content_type(&headers, format),
            media: MediaHeaders::from_headers(&headers),
            bytes,
        })
    }

    /// A POST through the request loop, with the token (refreshed once on 401) and
    /// 425 RECORDING_NOT_READY retried; the answer whatever its status.
    async fn call_not_ready(
        &self,
        account: &AccountId,
        what: &'static str,
        url: &Url,
        body: Vec<u8>,
    ) -> Result<Answer, RingError> {
        let http = &self.inner.http;
        let mut token = self.access_token(account).await?;
        let mut refreshed = false;
        let mut not_ready = 0;
        loop {
            let answer = self
                .send(Request {
                    what,
                    method: Method::POST,
                    url: url.clone(),
                    bearer: Some(&token),
                    body: Body::Json(body.clone()),
                })
                .await?;
            if answer.status == 401 && !refreshed {
                refreshed = true;
                token = self.token(account, Some(&token)).await?;
                continue;
            }
            if answer.status == 425 && not_ready < http.max_retries() {
                let wait =
                    http.retry_wait(not_ready, retry_after(&answer.headers, SystemTime::now()));
                tracing::debug!(
                    call = what,
                    wait_ms = wait.as_millis() as u64,
                    "recording not ready; retrying"
                );
                tokio::time::sleep(wait).await;
                not_ready += 1;
                http.count_retry();
                continue;
            }
            return Ok(answer);
        }
    }

    /// Downloads a clip into `path` (written as `path.part`, renamed when complete).
    /// 416 (nothing recorded) and the other refusals are [`RingError::Api`].
    pub async fn download_clip(
        &self,
        account: &AccountId,
        device: &DeviceId,
        request: &ClipRequest,
        path: &Path,
    ) -> Result<ClipDownload, RingError> {
        let body = serde_json::to_vec(&request.body(SystemTime::now())?)
            .map_err(|e| RingError::Malformed(format!("request body: {e}")))?;
        let api_url = self.api(&["devices", device.as_str(), "media", "video", "download"]);
        let what = "POST /v1/devices/{id}/media/video/download";
        let part = part_path(path);
        let http = &self.inner.http;
        let mut file = tokio::fs::File::create(&part).await.map_err(io(what))?;
        let mut token = self.access_token(account).await?;
        let mut refreshed = false;
        let mut retries = 0;
        let mut redirects = 0;
        let mut url = api_url.clone();
        let mut written: u64 = 0;
        let mut first: Option<(bool, MediaHeaders)> = None;
        let mut resumed = 0;
        let result = loop {
            let own = same_origin(&url, &self.inner.config.api_url);
            if own {
                http.admit().await;
            }
            let mut builder = http
                .reqwest()
                .request(Method::POST, url.clone())
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone());
            if own {
                builder = builder.bearer_auth(token.expose());
            }
            if written > 0 {
                builder = builder.header(RANGE, format!("bytes={written}-"));
            }
            let sent = tokio::time::timeout(http.timeout(), builder.send()).await;
            let mut response = match sent {
                Ok(Ok(response)) => response,
                Ok(Err(e)) if retries < http.max_retries() => {
                    tracing::debug!(call = what, error = %transport_detail(e), "clip request failed; retrying");
                    tokio::time::sleep(http.retry_wait(retries, None)).await;
                    retries += 1;
                    http.count_retry();
                    continue;
                }
                Ok(Err(e)) => break Err(transport(what, http.timeout(), e)),
                Err(_) => {
                    break Err(RingError::Timeout {
                        what,
                        timeout: http.timeout(),
                    })
                }
            };
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            if matches!(status, 301 | 302 | 307 | 308) && redirects < MAX_REDIRECTS {
                redirects += 1;
                match location(&headers, &url, "clip redirect") {
                    Ok(next) => {
                        url = next;
                        continue;
                    }
                    Err(e) => break Err(e),
                }
            }
            if status == 401 && own && !refreshed {
                refreshed = true;
                match self.token(account, Some(&token)).await {
                    Ok(new) => token = new,
                    Err(e) => break Err(e),
                }
                continue;
            }
            if (status == 429 || status == 425 || status >= 500) && retries < http.max_retries() {
                let answer = read_small(&mut response).await;
                if !(status == 503
                    && matches!(
                        RingError::from_api_answer(status, &answer),
                        RingError::DeviceOffline { .. }
                    ))
                {
                    let wait = http.retry_wait(retries, retry_after(&headers, SystemTime::now()));
                    tokio::time::sleep(wait).await;
                    retries += 1;
                    http.count_retry();
                    continue;
                }
                break Err(RingError::from_api_answer(status, &answer));
            }
            if !matches!(status, 200 | 206) {
                let answer = read_small(&mut response).await;
                break Err(RingError::from_api_answer(status, &answer));
            }
            let ranged = headers.contains_key(CONTENT_RANGE);
            if written > 0 && !ranged {
                // The server ignored the Range: start over.
                tracing::debug!(call = what, "clip resume not honoured; downloading again");
                if let Err(e) = restart(&mut file).await {
                    break Err(io(what)(e));
                }
                written = 0;
            }
            if first.is_none() || !ranged {
                first = Some((
                    status == 206 && !ranged,
                    MediaHeaders::from_headers(&headers),
                ));
            }
            let announced = response.content_length();
            let before = written;
            let mut cut = false;
            loop {
                match tokio::time::timeout(http.timeout(), response.chunk()).await {
                    Ok(Ok(Some(chunk))) => {
                        written += chunk.len() as u64;
                        if written > MAX_CLIP_BYTES {
                            return Err(RingError::BodyTooLarge {
                                what,
                                limit: MAX_CLIP_BYTES as usize,
                            });
                        }
                        if let Err(e) = file.write_all(&chunk).await {
                            return Err(io(what)(e));
                        }
                    }
                    Ok(Ok(None)) => break,
                    Ok(Err(_)) | Err(_) => {
                        cut = true;
                        break;
                    }
                }
            }
            let short = announced.is_some_and(|n| written - before < n);
            if !cut && !short {
                break Ok(());
            }
            if retries >= http.max_retries() {
                break Err(RingError::Transport {
                    what,
                    detail: format!("the clip was cut short after {written} bytes"),
                });
            }
            retries += 1;
            http.count_retry();
            if announced.is_none() {
                // Without a length there is nothing to resume from safely.
                if let Err(e) = restart(&mut file).await {
                    break Err(io(what)(e));
                }
                written = 0;
            } else {
                resumed += 1;
            }
            tracing::debug!(call = what, written, "clip download cut short; resuming");
        };
        if let Err(error) = result {
            drop(file);
            let _ = tokio::fs::remove_file(&part).await;
            return Err(error);
        }
        file.flush().await.map_err(io(what))?;
        file.sync_all().await.map_err(io(what))?;
        drop(file);
        tokio::fs::rename(&part, path).await.map_err(io(what))?;
        let (partial, media) = first.unwrap_or_default();
        Ok(ClipDownload {
            partial,
            bytes: written,
            media,
            resumed,
        })
    }

    /// The device's event history, newest first (`event_types` empty: every type).
    pub async fn history(
        &self,
        account: &AccountId,
        device: &DeviceId,
        event_types: &[String],
        max_pages: usize,
    ) -> Result<History, RingError> {
        let mut url = self.api(&["history", "devices", device.as_str(), "events"]);
        let types: Vec<&str> = event_types
            .iter()
            .map(|t| t.trim())
            .filter(|t| !t.is_empty())
            .collect();
        if !types.is_empty() {
            url.query_pairs_mut()
                .append_pair("event_types", &types.join(","));
        }
        let mut history = History {
            events: Vec::new(),
            pages: 0,
            complete: true,
        };
        loop {
            if history.pages >= max_pages {
                history.complete = false;
                return Ok(history);
            }
            let body = self
                .call(
                    account,
                    "GET /v1/history/devices/{id}/events",
                    Method::GET,
                    &url,
                    None,
                )
                .await?;
            history.pages += 1;
            let page = media::parse_history_page(&body)?;
            let empty = page.items.is_empty();
            history.events.extend(page.items);
            match page.next {
                Some(next) if !empty => url = self.next_page(&url, &next, "history")?,
                _ => return Ok(history),
            }
        }
    }

    /// Every subscription of the account (`page[cursor]` paging, 25 a page).
    pub async fn subscriptions(&self, account: &AccountId) -> Result<Vec<Subscription>, RingError> {
        let mut url = self.api(&["accounts", "me", "subscriptions"]);
        let mut found = Vec::new();
        for _ in 0..MAX_SUBSCRIPTION_PAGES {
            let body = self
                .call(
                    account,
                    "GET /v1/accounts/me/subscriptions",
                    Method::GET,
                    &url,
                    None,
                )
                .await?;
            let page = media::parse_subscriptions_page(&body)?;
            let empty = page.items.is_empty();
            found.extend(page.items);
            match page.next {
                Some(next) if !empty => url = self.next_page(&url, &next, "subscriptions")?,
                _ => return Ok(found),
            }
        }
        tracing::warn!(account = %account, "Ring subscriptions list cut short");
        Ok(found)
    }

    fn next_page(&self, current: &Url, next: &str, what: &str) -> Result<Url, RingError> {
        resolve_next(&self.inner.config.api_url, current, next)
            .ok_or_else(|| RingError::Malformed(format!("{what}: unusable links.next")))
    }
}

/// `next` resolved: a bare query against `current`, anything else against the API
/// base; `None` when it cannot be parsed or leaves the API's origin (the bearer
/// token goes only to Ring).
fn resolve_next(base: &Url, current: &Url, next: &str) -> Option<Url> {
    let resolved = if next.starts_with('?') {
        current.join(next)
    } else {
        base.join(next)
    }
    .ok()?;
    same_origin(&resolved, base).then_some(resolved)
}

fn same_origin(a: &Url, b: &Url) -> bool {
    a.origin() == b.origin()
}

fn location(headers: &HeaderMap, base: &Url, what: &str) -> Result<Url, RingError> {
    headers
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| base.join(v).ok())
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .ok_or_else(|| RingError::Malformed(format!("{what} without a usable Location")))
}

fn content_type(headers: &HeaderMap, format: ImageFormat) -> String {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.starts_with("image/"))
        .unwrap_or(format.content_type())
        .to_owned()
}

fn transport(what: &'static str, timeout: Duration, error: reqwest::Error) -> RingError {
    if error.is_timeout() {
        RingError::Timeout { what, timeout }
    } else {
        RingError::Transport {
            what,
            detail: transport_detail(error),
        }
    }
}

fn io(what: &'static str) -> impl Fn(std::io::Error) -> RingError {
    move |e| RingError::Transport {
        what,
        detail: format!("writing the clip: {e}"),
    }
}

fn part_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    path.with_file_name(name)
}

async fn restart(file: &mut tokio::fs::File) -> std::io::Result<()> {
    use tokio::io::AsyncSeekExt;
    file.set_len(0).await?;
    file.seek(std::io::SeekFrom::Start(0)).await?;
    Ok(())
}

/// The first 64 KiB of an error answer's body.
async fn read_small(response: &mut reqwest::Response) -> Vec<u8> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        body.extend_from_slice(&chunk);
        if body.len() > 64 * 1024 {
            break;
        }
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_links_are_opaque_but_stay_with_ring() {
        let base = Url::parse("https://api.example").unwrap();
        let current =
            Url::parse("https://api.example/v1/history/devices/d/events?event_types=ding").unwrap();
        let path =
            "/v1/history/devices/d/events?event_types=ding&page%5Bkey%5D=2026-01-01T00%3A00%3A00Z";
        assert_eq!(
            resolve_next(&base, &current, path).unwrap().as_str(),
            format!("https://api.example{path}")
        );
        assert_eq!(
            resolve_next(
                &base,
                &current,
                "https://api.example/v1/x?page%5Bcursor%5D=c25"
            )
            .unwrap()
            .as_str(),
            "https://api.example/v1/x?page%5Bcursor%5D=c25"
        );
        assert_eq!(
            resolve_next(&base, &current, "?page%5Bcursor%5D=a")
                .unwrap()
                .as_str(),
            "https://api.example/v1/history/devices/d/events?page%5Bcursor%5D=a"
        );
        assert!(resolve_next(&base, &current, "https://evil.example/v1/x").is_none());
        assert!(resolve_next(&base, &current, "http://api.example/v1/x").is_none());
    }

    #[test]
    fn part_paths_and_origins() {
        assert_eq!(
            part_path(Path::new("/c/a.mp4")),
            PathBuf::from("/c/a.mp4.part")
        );
        let api = Url::parse("https://api.example/").unwrap();
        assert!(same_origin(
            &Url::parse("https://api.example/v1/x?y").unwrap(),
            &api
        ));
        assert!(!same_origin(
            &Url::parse("https://evil.example/v1").unwrap(),
            &api
        ));
    }
}
