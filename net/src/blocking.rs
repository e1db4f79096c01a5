//! Blocking work (fsync, file reads) kept off the async runtime's threads.

/// Runs `work` on tokio's blocking pool. Under madsim nothing may block and
/// the simulated store never does, so it runs inline there.
pub(crate) async fn run_blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    #[cfg(not(madsim))]
    {
        tokio::task::spawn_blocking(work).await.expect("blocking work does not panic")
    }
    #[cfg(madsim)]
    {
        work()
    }
}
