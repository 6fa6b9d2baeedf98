//! hyper's HTTP/1.1 head timeout, read off the clock whenever hyper looks at it,
//! without a timer of the runtime's.
//!
//! hyper starts a timer for every request head and drops it once the head is read:
//! with tokio's timer that is an allocation, an entry put into the timer wheel and
//! taken out again, a request (some 1 % of one). Here a head's timeout is only its
//! deadline, checked each time hyper polls it, which it does each time the
//! connection's task polls hyper while a head is awaited. That task polls it at
//! least every park interval (`TurnWatch`: the connection's own timer, which runs
//! whenever hyper may be reading a head), so a head that is late is cut off at
//! most one park interval (a quarter of the head timeout at most: see
//! `Protocols::new`) after its deadline.
//!
//! Only for HTTP/1.1 turns: HTTP/2 keeps tokio's timer, as nothing else wakes it.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::rt::{Sleep, Timer};

/// The timer given to hyper's HTTP/1.1 connections (see the module's doc).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct HeadTimer;

/// A deadline, over once the clock has passed it; also `within`'s bound on an
/// HTTP/1.1 request's wait.
pub(super) struct Deadline(pub(super) tokio::time::Instant);

impl Future for Deadline {
    type Output = ();

    /// Never registers a waker: the connection's task polls it again (see the
    /// module's doc).
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        if tokio::time::Instant::now() >= self.0 { Poll::Ready(()) } else { Poll::Pending }
    }
}

impl Sleep for Deadline {}

impl Timer for HeadTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        Box::pin(Deadline(tokio::time::Instant::now() + duration))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        Box::pin(Deadline(deadline.into()))
    }

    /// tokio's clock (paused in tests), as the deadlines are read on it.
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn Sleep>>, new_deadline: Instant) {
        match sleep.as_mut().downcast_mut_pin::<Deadline>() {
            Some(mut deadline) => deadline.0 = new_deadline.into(),
            None => *sleep = self.sleep_until(new_deadline),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::task::{Context, Poll, Waker};
    use std::time::Duration;

    use hyper::rt::Timer;

    use super::HeadTimer;

    #[tokio::test(start_paused = true)]
    async fn a_deadline_is_over_once_the_clock_passes_it_and_moves_when_reset() {
        let timer = HeadTimer;
        let mut cx = Context::from_waker(Waker::noop());
        let mut sleep = timer.sleep(Duration::from_secs(10));
        assert_eq!(sleep.as_mut().poll(&mut cx), Poll::Pending);
        tokio::time::advance(Duration::from_secs(9)).await;
        assert_eq!(sleep.as_mut().poll(&mut cx), Poll::Pending);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(sleep.as_mut().poll(&mut cx), Poll::Ready(()));

        let later = timer.now() + Duration::from_secs(5);
        timer.reset(&mut sleep, later);
        assert_eq!(sleep.as_mut().poll(&mut cx), Poll::Pending, "reset to a later deadline");
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(sleep.as_mut().poll(&mut cx), Poll::Ready(()));
    }
}
