//! A request's bound on a wait (the upstream's answer), read off the clock where
//! the connection's task polls the request anyway.
//!
//! On an HTTP/1.1 connection hyper polls the request in flight each time the
//! connection's task polls hyper, which it does at least once a park interval
//! (`TurnWatch`). A deadline there needs no timer of the runtime's, only a look at
//! the clock when polled: the saving of `head_timer`, an entry put into the timer
//! wheel and taken out again every request. A wait is then cut off at most one
//! park interval (≤ 1 s) after its deadline. HTTP/2 serves each request in a task
//! of its own, which nothing else wakes: there it is tokio's timeout.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper::Version;
use tokio::time::Instant;

use super::head_timer::Deadline;

/// The deadline passed first.
#[derive(Debug)]
pub struct Elapsed;

pin_project_lite::pin_project! {
    /// The wait of [`within`].
    #[project = WithinProjection]
    pub enum Within<F> {
        /// Looked at when polled (HTTP/1.x).
        Polled {
            #[pin]
            future: F,
            deadline: Deadline,
        },
        /// A timer of the runtime's (HTTP/2).
        Timer {
            #[pin]
            timeout: tokio::time::Timeout<F>,
        },
    }
}

/// `future`, for a request of `version`, unless `deadline` passes first.
pub fn within<F: Future>(version: Version, deadline: Instant, future: F) -> Within<F> {
    if matches!(version, Version::HTTP_09 | Version::HTTP_10 | Version::HTTP_11) {
        Within::Polled { future, deadline: Deadline(deadline) }
    } else {
        Within::Timer { timeout: tokio::time::timeout_at(deadline, future) }
    }
}

impl<F: Future> Future for Within<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            WithinProjection::Polled { future, deadline } => {
                if let Poll::Ready(out) = future.poll(cx) {
                    return Poll::Ready(Ok(out));
                }
                // No waker is registered for the deadline: see the module's doc.
                Pin::new(deadline).poll(cx).map(|()| Err(Elapsed))
            }
            WithinProjection::Timer { timeout } => timeout.poll(cx).map(|out| out.map_err(|_| Elapsed)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};
    use std::time::Duration;

    use hyper::Version;
    use tokio::time::Instant;

    use super::within;

    #[tokio::test(start_paused = true)]
    async fn an_http1_wait_ends_at_the_first_poll_past_its_deadline_and_an_http2_one_by_its_timer() {
        let mut cx = Context::from_waker(Waker::noop());
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut wait = pin!(within(Version::HTTP_11, deadline, std::future::pending::<()>()));
        assert!(wait.as_mut().poll(&mut cx).is_pending());
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(wait.as_mut().poll(&mut cx).is_pending());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(matches!(wait.as_mut().poll(&mut cx), Poll::Ready(Err(_))));
        let answered = within(Version::HTTP_11, deadline, std::future::ready(7));
        assert!(matches!(pin!(answered).poll(&mut cx), Poll::Ready(Ok(7))), "an answer counts, late or not");

        // Nothing polls an HTTP/2 request's task but its own wakers.
        let deadline = Instant::now() + Duration::from_secs(10);
        let waited = within(Version::HTTP_2, deadline, std::future::pending::<()>()).await;
        assert!(waited.is_err());
        assert_eq!(Instant::now(), deadline);
    }
}
