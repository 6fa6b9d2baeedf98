//! What a turn of an HTTP/1.1 connection waits for besides hyper: the park
//! interval's timer and the server's shutdown signal (see `connection`).

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use tokio::time::Instant;

use crate::transport::shutdown::{Shutdown, Stopped};

/// What ended a wait of [`TurnWatch::next`].
pub(super) enum Turn<T> {
    /// Hyper's connection future finished.
    Done(T),
    /// A park interval passed: time to see whether the connection may park.
    Quiet,
    /// The server shuts down.
    Shutdown,
}

/// The park interval's timer and the shutdown signal of one turn, next to hyper.
/// A busy connection's task wakes twice a request; the timer and the signal keep
/// the task's waker from their last poll, so a wake-up polls them again only when
/// they are due (an elapsed timer, a changed signal: a flag each), not every time
/// (which cost 1 % of a proxied request, as `select!` did).
pub(super) struct TurnWatch<'a> {
    park_after: Duration,
    quiet: Pin<Box<tokio::time::Sleep>>,
    /// The timer holds the task's waker for its current deadline.
    quiet_armed: bool,
    /// Looked at (`is_stopped`) to decide whether `stop`, which waits on it,
    /// needs a poll.
    shutdown: &'a Shutdown,
    stop: Pin<Box<Stopped<'a>>>,
    stop_armed: bool,
    shutting_down: bool,
}

impl<'a> TurnWatch<'a> {
    pub(super) fn new(park_after: Duration, shutdown: &'a Shutdown) -> Self {
        Self {
            park_after,
            quiet: Box::pin(tokio::time::sleep(park_after)),
            quiet_armed: false,
            shutdown,
            stop: Box::pin(shutdown.stopped()),
            stop_armed: false,
            shutting_down: false,
        }
    }

    /// Drive `conn` until it finishes, a park interval passes (unless `stopping`:
    /// hyper was already asked to stop) or the server shuts down.
    ///
    /// `conn` is polled at least once a park interval, `stopping` or not: hyper's
    /// head timeout is looked at only then (see `head_timer`).
    pub(super) async fn next<C: Future + Unpin>(&mut self, conn: &mut C, stopping: bool) -> Turn<C::Output> {
        let turn = std::future::poll_fn(|cx| {
            if let Poll::Ready(done) = Pin::new(&mut *conn).poll(cx) {
                return Poll::Ready(Turn::Done(done));
            }
            if (!self.quiet_armed || self.quiet.is_elapsed()) && self.quiet.as_mut().poll(cx).is_ready() {
                if !stopping {
                    return Poll::Ready(Turn::Quiet);
                }
                // Nothing to park; only the next look at hyper to wake up for.
                self.quiet.as_mut().reset(Instant::now() + self.park_after);
                let _ = self.quiet.as_mut().poll(cx);
            }
            self.quiet_armed = true;
            if !self.shutting_down && (!self.stop_armed || self.shutdown.is_stopped()) {
                if self.stop.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Turn::Shutdown);
                }
                self.stop_armed = true;
            }
            Poll::Pending
        })
        .await;
        match turn {
            Turn::Quiet => {
                let next = self.quiet.deadline() + self.park_after;
                self.quiet.as_mut().reset(next.max(Instant::now()));
                self.quiet_armed = false;
            }
            Turn::Shutdown => self.shutting_down = true,
            Turn::Done(_) => {}
        }
        turn
    }
}
