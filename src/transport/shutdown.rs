//! The server's shutdown signal, which every connection holds and waits on.
//!
//! Made for what connections do with it: an awake connection looks at it on every
//! wake-up (twice a request), so looking is one atomic load; a parked connection
//! waits on it in its task, so the wait is small (72 bytes), and nameable, to sit
//! in a future of its own. (A `watch` channel's wait is 120 bytes, a
//! `CancellationToken`'s look takes a lock.)

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use tokio::sync::Notify;
use tokio::sync::futures::Notified;

/// The shutdown signal; clones share it.
#[derive(Clone, Default)]
pub struct Shutdown(Arc<Signal>);

#[derive(Default)]
struct Signal {
    stopped: AtomicBool,
    notify: Notify,
}

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    /// Signal the shutdown: every wait ends, and every later one at once.
    pub fn stop(&self) {
        self.0.stopped.store(true, Ordering::Release);
        self.0.notify.notify_waiters();
    }

    pub fn is_stopped(&self) -> bool {
        self.0.stopped.load(Ordering::Acquire)
    }

    /// Wait for [`Shutdown::stop`] (over at once if it came already).
    pub fn stopped(&self) -> Stopped<'_> {
        // Made before the flag is looked at: a `stop` after this point ends it.
        Stopped { notified: self.0.notify.notified(), shutdown: self }
    }
}

pin_project_lite::pin_project! {
    /// The wait of [`Shutdown::stopped`].
    pub struct Stopped<'a> {
        #[pin]
        notified: Notified<'a>,
        shutdown: &'a Shutdown,
    }
}

impl Future for Stopped<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        if this.shutdown.is_stopped() {
            return Poll::Ready(());
        }
        // `stop` sets the flag before it notifies: this wakes only for it.
        this.notified.poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};
    use std::time::Duration;

    use super::Shutdown;

    #[test]
    fn a_wait_ends_at_the_stop_whether_it_began_before_or_after() {
        let shutdown = Shutdown::new();
        let (early, never_polled) = (shutdown.stopped(), shutdown.stopped());
        let mut early = pin!(early);
        let mut cx = Context::from_waker(Waker::noop());
        assert_eq!(early.as_mut().poll(&mut cx), Poll::Pending);
        assert!(!shutdown.is_stopped());

        shutdown.clone().stop();
        assert!(shutdown.is_stopped());
        assert_eq!(early.poll(&mut cx), Poll::Ready(()));
        assert_eq!(pin!(never_polled).poll(&mut cx), Poll::Ready(()));
        assert_eq!(pin!(shutdown.stopped()).poll(&mut cx), Poll::Ready(()));
    }

    #[tokio::test]
    async fn a_waiting_task_is_woken_by_the_stop() {
        let shutdown = Shutdown::new();
        let waiting = shutdown.clone();
        let waiter = tokio::spawn(async move { waiting.stopped().await });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        shutdown.stop();
        tokio::time::timeout(Duration::from_secs(10), waiter).await.expect("woken").unwrap();
    }
}
