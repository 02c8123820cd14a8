//! Bounded exponential backoff.

use std::future::Future;
use std::time::Duration;

use super::RegistryError;

/// How often and how patiently to retry transient failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts, the first included (at least 1).
    pub attempts: u32,
    /// Delay before the second attempt; doubles each time.
    pub base_delay: Duration,
    /// Upper bound of one delay.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// Delay after failed attempt number `attempt` (1-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.base_delay
            .checked_mul(factor)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }

    /// Run `op` until it succeeds, fails with a non-retryable error, or the
    /// attempts are used up; the error returned records the attempt count.
    pub async fn run<T, F, Fut>(&self, mut op: F) -> Result<T, RegistryError>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, RegistryError>>,
    {
        let max = self.attempts.max(1);
        let mut attempt = 1;
        loop {
            match op(attempt).await {
                Ok(v) => return Ok(v),
                Err(e) if e.is_retryable() && attempt < max => {
                    tokio::time::sleep(self.delay(attempt)).await;
                    attempt += 1;
                }
                Err(mut e) => {
                    e.set_attempts(attempt);
                    return Err(e);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn server_error() -> RegistryError {
        RegistryError::Status {
            registry: "r".into(),
            repository: "x".into(),
            what: "blob".into(),
            status: 503,
            message: "busy".into(),
            attempts: 1,
        }
    }

    #[test]
    fn delays_double_and_cap() {
        let p = RetryPolicy::default();
        assert_eq!(p.delay(1), Duration::from_millis(200));
        assert_eq!(p.delay(2), Duration::from_millis(400));
        assert_eq!(p.delay(4), Duration::from_millis(1600));
        assert_eq!(p.delay(10), Duration::from_secs(10));
        assert_eq!(p.delay(100), Duration::from_secs(10));
    }

    #[tokio::test]
    async fn retries_only_retryable_errors_and_counts_attempts() {
        let p = RetryPolicy {
            attempts: 3,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
        };
        let calls = AtomicU32::new(0);
        let err = p
            .run(|_| async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>(server_error())
            })
            .await
            .unwrap_err();
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert!(
            err.to_string().contains("gave up after 3 attempts"),
            "{err}"
        );

        calls.store(0, Ordering::SeqCst);
        let err = p
            .run(|_| async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>(RegistryError::Credentials("no".into()))
            })
            .await
            .unwrap_err();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(matches!(err, RegistryError::Credentials(_)));

        // An error that used up an inner loop's attempts is not retried outside.
        calls.store(0, Ordering::SeqCst);
        let err = p
            .run(|_| {
                p.run(|_| async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Err::<(), _>(server_error())
                })
            })
            .await
            .unwrap_err();
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert!(!err.is_retryable());

        let v = p
            .run(|n| async move { if n < 2 { Err(server_error()) } else { Ok(n) } })
            .await
            .unwrap();
        assert_eq!(v, 2);
    }
}
