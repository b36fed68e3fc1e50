//! The request loop every call goes through: the shared rate limiter, the bearer
//! token, the timeout, a capped body, and retries of 429 and 5xx (and of GETs whose
//! connection failed) with backoff from `retry_base` (1 s), doubling, honouring
//! `Retry-After` (seconds or an HTTP-date), at most `max_retries` times. A 429 also
//! holds the shared limiter, so every account of the client id backs off together.
//! A 503 "Device is currently offline" is final: retrying will not wake the camera.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use reqwest::header::{HeaderMap, ACCEPT, CONTENT_TYPE, RETRY_AFTER};
use reqwest::Method;
use streamgate_redact::Secret;
use url::Url;

use crate::config::RingConfig;
use crate::error::RingError;
use crate::limiter::{Limiter, LimiterStats};

/// What a request sends after its headers.
pub(crate) enum Body<'a> {
    Empty,
    /// `application/x-www-form-urlencoded` (the token endpoint).
    Form(&'a [(&'static str, &'a str)]),
    /// `application/json`, already serialized.
    Json(Vec<u8>),
}

pub(crate) struct Request<'a> {
    /// Names the call in errors and logs ("token refresh", "GET /v1/devices").
    pub what: &'static str,
    pub method: Method,
    pub url: Url,
    pub bearer: Option<&'a Secret>,
    pub body: Body<'a>,
}

/// A final answer (success, or an error status that retries did not change).
pub(crate) struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
    /// The answer's headers (`Location` of a media redirect, `X-Media-*`).
    pub headers: HeaderMap,
}

impl Answer {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body of a 2xx answer, else the API error it carries.
    pub fn into_api_body(self) -> Result<Vec<u8>, RingError> {
        if self.is_success() {
            Ok(self.body)
        } else {
            Err(RingError::from_api_answer(self.status, &self.body))
        }
    }
}

pub(crate) struct Http {
    client: reqwest::Client,
    limiter: Mutex<Limiter>,
    stats: Mutex<LimiterStats>,
    timeout: Duration,
    max_retries: u32,
    retry_base: Duration,
    max_retry_wait: Duration,
    max_body: usize,
}

/// One try's outcome before the retry decision.
struct Tried {
    answer: Answer,
    retry_after: Option<Duration>,
}

impl Http {
    pub fn new(config: &RingConfig) -> Result<Http, RingError> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("streamgate-ring/", env!("CARGO_PKG_VERSION")))
            // Ring's documented calls do not redirect; a redirect is reported, not followed.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(config.http_timeout)
            .build()
            .map_err(|e| RingError::Config(transport_detail(e)))?;
        Ok(Http {
            client,
            limiter: Mutex::new(Limiter::new(config.max_requests_per_second)),
            stats: Mutex::new(LimiterStats::default()),
            timeout: config.http_timeout,
            max_retries: config.max_retries,
            retry_base: config.retry_base,
            max_retry_wait: config.max_retry_wait,
            max_body: config.max_body_bytes,
        })
    }

    pub fn stats(&self) -> LimiterStats {
        *lock(&self.stats)
    }

    /// The HTTP client itself, for the media downloads that stream their body or
    /// follow a pre-signed URL (`client/media.rs`); call [`Http::admit`] first for
    /// requests to the API.
    pub fn reqwest(&self) -> &reqwest::Client {
        &self.client
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn max_retries(&self) -> u32 {
        self.max_retries
    }

    /// The wait before retry number `retries` + 1 when Ring gave no `Retry-After`.
    pub fn retry_wait(&self, retries: u32, retry_after: Option<Duration>) -> Duration {
        retry_after
            .unwrap_or_else(|| self.backoff(retries))
            .min(self.max_retry_wait)
    }

    /// Counts a retry made outside [`Http::send`].
    pub fn count_retry(&self) {
        lock(&self.stats).retries += 1;
    }

    /// Sends `request`, retrying as the module docs say.
    pub async fn send(&self, request: &Request<'_>) -> Result<Answer, RingError> {
        let idempotent = matches!(request.method, Method::GET | Method::DELETE);
        let mut retries = 0;
        loop {
            self.admit().await;
            let result = self.try_once(request).await;
            let (wait, rate_limited) = match &result {
                Ok(tried) if tried.answer.status == 429 => {
                    lock(&self.stats).rate_limited += 1;
                    (Some(tried.retry_after), true)
                }
                Ok(tried) if tried.answer.status >= 500 && !is_offline(&tried.answer) => {
                    (Some(tried.retry_after), false)
                }
                Err(RingError::Timeout { .. } | RingError::Transport { .. }) if idempotent => {
                    (Some(None), false)
                }
                _ => (None, false),
            };
            let Some(retry_after) = wait else {
                return result.map(|tried| tried.answer);
            };
            if retries >= self.max_retries {
                return match result {
                    Ok(tried) if rate_limited => Err(RingError::RateLimited {
                        retries,
                        retry_after: tried.retry_after,
                    }),
                    other => other.map(|tried| tried.answer),
                };
            }
            let wait = retry_after
                .unwrap_or_else(|| self.backoff(retries))
                .min(self.max_retry_wait);
            if rate_limited {
                lock(&self.limiter).hold_until(Instant::now() + wait);
            }
            tracing::debug!(
                call = request.what,
                retry = retries + 1,
                wait_ms = wait.as_millis() as u64,
                "retrying a Ring request"
            );
            tokio::time::sleep(wait).await;
            retries += 1;
            lock(&self.stats).retries += 1;
        }
    }

    fn backoff(&self, retries: u32) -> Duration {
        self.retry_base.saturating_mul(1 << retries.min(16))
    }

    /// Waits until the shared limiter lets one more request go (and any hold after
    /// a 429 has passed).
    pub async fn admit(&self) {
        let mut delayed = false;
        loop {
            let verdict = lock(&self.limiter).try_acquire(Instant::now());
            match verdict {
                Ok(()) => break,
                Err(wait) => {
                    delayed = true;
                    tokio::time::sleep(wait).await;
                }
            }
        }
        let mut stats = lock(&self.stats);
        stats.sent += 1;
        if delayed {
            stats.delayed += 1;
        }
    }

    async fn try_once(&self, request: &Request<'_>) -> Result<Tried, RingError> {
        let mut builder = self
            .client
            .request(request.method.clone(), request.url.clone())
            .timeout(self.timeout)
            .header(ACCEPT, "application/json");
        if let Some(token) = request.bearer {
            builder = builder.bearer_auth(token.expose());
        }
        builder = match &request.body {
            Body::Empty => builder,
            Body::Form(pairs) => builder.form(pairs),
            Body::Json(json) => builder
                .header(CONTENT_TYPE, "application/json")
                .body(json.clone()),
        };
        let response = builder
            .send()
            .await
            .map_err(|e| self.transport(request.what, e))?;
        let status = response.status().as_u16();
        let retry_after = retry_after(response.headers(), SystemTime::now());
        let headers = response.headers().clone();
        let body = self.read_capped(request.what, response).await?;
        Ok(Tried {
            answer: Answer {
                status,
                body,
                headers,
            },
            retry_after,
        })
    }

    async fn read_capped(
        &self,
        what: &'static str,
        mut response: reqwest::Response,
    ) -> Result<Vec<u8>, RingError> {
        let too_large = RingError::BodyTooLarge {
            what,
            limit: self.max_body,
        };
        let announced = response.content_length().unwrap_or(0);
        if usize::try_from(announced).map_or(true, |n| n > self.max_body) {
            return Err(too_large);
        }
        let mut body = Vec::with_capacity(usize::try_from(announced).unwrap_or(0));
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.transport(what, e))?
        {
            if body.len() + chunk.len() > self.max_body {
                return Err(too_large);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    fn transport(&self, what: &'static str, error: reqwest::Error) -> RingError {
        if error.is_timeout() {
            RingError::Timeout {
                what,
                timeout: self.timeout,
            }
        } else {
            RingError::Transport {
                what,
                detail: transport_detail(error),
            }
        }
    }
}

/// reqwest's message and its causes, without the URL (ours carry no secret, but the
/// error should name the call, not the address).
pub(crate) fn transport_detail(error: reqwest::Error) -> String {
    streamgate_redact::error_chain(&error.without_url())
}

fn is_offline(answer: &Answer) -> bool {
    answer.status == 503
        && matches!(
            RingError::from_api_answer(answer.status, &answer.body),
            RingError::DeviceOffline { .. }
        )
}

/// `Retry-After` as delta-seconds or an HTTP-date (RFC 9110 §10.2.3).
pub(crate) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    match value.parse::<u64>() {
        Ok(seconds) => Some(Duration::from_secs(seconds)),
        Err(_) => Some(
            httpdate::parse_http_date(value)
                .ok()?
                .duration_since(now)
                .unwrap_or_default(),
        ),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn retry_after_takes_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers, now), None);
        headers.insert(RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(3)));
        let date = httpdate::fmt_http_date(now + Duration::from_secs(7));
        headers.insert(RETRY_AFTER, HeaderValue::from_str(&date).unwrap());
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(7)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(7));
        headers.insert(RETRY_AFTER, HeaderValue::from_str(&past).unwrap());
        assert_eq!(retry_after(&headers, now), Some(Duration::ZERO));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers, now), None);
    }
}
