//! Blocking work (file reads, a TSDB's open or select) run off the async workers.
//!
//! Tokio's workers must not wait on disks: one slow `pread` would stall every request scheduled
//! on the same worker. [`run`] moves a closure to tokio's blocking pool and gives back its result.

use crate::error::{Classify, ErrorClass};

/// Blocking work that never ran: the runtime shut down before the pool picked it up.
#[derive(Debug, thiserror::Error)]
#[error("blocking work did not run: {0}")]
pub struct Cancelled(#[source] tokio::task::JoinError);

impl Classify for Cancelled {
    fn class(&self) -> ErrorClass {
        // Only happens while shutting down: another node (or this one restarted) can answer.
        ErrorClass::Unavailable
    }
}

/// Runs `f` on the blocking pool. A panic in `f` resumes here, as if `f` had run inline.
pub async fn run<T, F>(f: F) -> Result<T, Cancelled>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => Ok(v),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(Cancelled(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn runs_off_the_worker_and_returns_the_result() {
        let worker = std::thread::current().id();
        let ran_on = run(|| std::thread::current().id()).await.unwrap();
        assert_ne!(ran_on, worker);
    }

    #[tokio::test(flavor = "current_thread")]
    #[should_panic(expected = "boom")]
    async fn a_panic_resumes_in_the_caller() {
        let _: () = run(|| panic!("boom")).await.unwrap();
    }
}
