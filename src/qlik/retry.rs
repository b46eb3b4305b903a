//! When a failed attempt may be retried, and how long to wait.
//!
//! | request | retried on | not retried |
//! |---|---|---|
//! | GET, PATCH, DELETE, POST /oauth/token, POST /oauth/revoke | connect errors, timeouts, resets, 429, 500, 502, 503, 504 | TLS certificate errors, other statuses |
//! | POST /api-keys, POST /oauth-clients/{id}/client-secrets | 429; connect errors (nothing was sent) | timeouts, resets, 5xx, unreadable 201: `OutcomeUnknown` |
//!
//! Waits are exponential with jitter; a 429 waits its `retry-after` instead. Nothing waits
//! past the call's deadline (`request_timeout`), and a `retry-after` longer than
//! [`MAX_RETRY_AFTER`] ends the call with `RateLimited` at once: Qlik blocks the whole tier
//! until then, so an earlier retry would only be refused again.

use std::time::Duration;

use backon::ExponentialBuilder;

use super::error::QlikError;

/// Longest `retry-after` the client is prepared to wait inside one call.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// One failed attempt: the error it would end the call with, and whether to try again.
#[derive(Debug)]
pub(crate) struct AttemptError {
    pub error: QlikError,
    pub retryable: bool,
    pub retry_after: Option<Duration>,
}

impl AttemptError {
    pub fn fatal(error: QlikError) -> Self {
        Self {
            error,
            retryable: false,
            retry_after: None,
        }
    }

    pub fn transient(error: QlikError, retry_after: Option<Duration>) -> Self {
        Self {
            error,
            retryable: true,
            retry_after,
        }
    }
}

pub(crate) fn backoff(max_retries: u32) -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(5))
        .with_factor(2.0)
        .with_jitter()
        .with_max_times(max_retries as usize)
}

/// The wait before the next attempt, or `None` to stop now.
pub(crate) fn next_wait(
    error: &AttemptError,
    backoff: Option<Duration>,
    left: Duration,
) -> Option<Duration> {
    let backoff = backoff?;
    let wait = match error.retry_after {
        Some(retry_after) if retry_after > MAX_RETRY_AFTER => return None,
        Some(retry_after) => retry_after,
        None => backoff,
    };
    // Leave the next attempt some time to run, or do not start it at all.
    (wait + Duration::from_millis(100) < left).then_some(wait)
}

/// Parses `retry-after` in seconds (Qlik sends integers; HTTP dates are not used by Qlik).
pub(crate) fn parse_retry_after(value: Option<&reqwest::header::HeaderValue>) -> Option<Duration> {
    let seconds: f64 = value?.to_str().ok()?.trim().parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limited(retry_after: Option<Duration>) -> AttemptError {
        let error = QlikError::RateLimited {
            operation: "GET x".into(),
            retry_after,
            attempts: 0,
        };
        AttemptError::transient(error, retry_after)
    }

    #[test]
    fn retry_after_replaces_backoff() {
        let e = limited(Some(Duration::from_secs(1)));
        assert_eq!(
            next_wait(
                &e,
                Some(Duration::from_millis(200)),
                Duration::from_secs(10)
            ),
            Some(Duration::from_secs(1))
        );
    }

    #[test]
    fn never_waits_past_the_deadline_or_the_cap() {
        let e = limited(Some(Duration::from_secs(5)));
        assert_eq!(
            next_wait(&e, Some(Duration::from_millis(200)), Duration::from_secs(3)),
            None
        );
        let e = limited(Some(Duration::from_secs(31)));
        assert_eq!(
            next_wait(
                &e,
                Some(Duration::from_millis(200)),
                Duration::from_secs(300)
            ),
            None
        );
    }

    #[test]
    fn stops_when_the_backoff_is_exhausted() {
        let e = limited(None);
        assert_eq!(next_wait(&e, None, Duration::from_secs(10)), None);
        assert_eq!(
            next_wait(
                &e,
                Some(Duration::from_millis(300)),
                Duration::from_secs(10)
            ),
            Some(Duration::from_millis(300))
        );
    }

    #[test]
    fn retry_after_header_parsing() {
        use reqwest::header::HeaderValue;
        assert_eq!(
            parse_retry_after(Some(&HeaderValue::from_static("13"))),
            Some(Duration::from_secs(13))
        );
        assert_eq!(
            parse_retry_after(Some(&HeaderValue::from_static(" 1 "))),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            parse_retry_after(Some(&HeaderValue::from_static("soon"))),
            None
        );
        assert_eq!(
            parse_retry_after(Some(&HeaderValue::from_static("-1"))),
            None
        );
        assert_eq!(parse_retry_after(None), None);
    }
}
