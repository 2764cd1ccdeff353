//! One reusable timer per bus loop: a timerfd watched by the async-io reactor.
//!
//! Why not `async_io::Timer`: every new `Timer` is queued to the reactor and
//! wakes it through its eventfd (a write, a spurious `epoll_wait` return, a
//! read and a re-arm per sleep). A bus sleeps two to four times per
//! transaction (t3.5 gap, the device's turnaround, the rest of the answer), so
//! those timers were most of the loop's system calls. Re-arming one timerfd
//! costs one `timerfd_settime`; its expiry is an ordinary readable fd.
//!
//! Where no timerfd can be made the sleeps fall back to `async_io::Timer`.
//!
//! A bus loop on a thread of its own uses a blocking timer instead
//! ([`LineTimer::blocking`]): the thread simply sleeps, with no reactor, no
//! timerfd and no hand-over between threads, which is what most of a
//! transaction's CPU time went to (see `Bus::on_own_thread`).

use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use async_io::{Async, Timer};
use rustix::time::{
    timerfd_create, timerfd_settime, Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec,
};

/// A monotonic one-shot timer; one sleep at a time.
pub struct LineTimer {
    fd: Option<Async<OwnedFd>>,
    blocking: bool,
}

impl Default for LineTimer {
    fn default() -> Self {
        Self::new()
    }
}

impl LineTimer {
    /// A timer on a new timerfd (or the async-io fallback if that fails).
    pub fn new() -> LineTimer {
        let fd = timerfd_create(TimerfdClockId::Monotonic, TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC)
            .ok()
            .and_then(|fd| Async::new(fd).ok());
        if fd.is_none() {
            log::debug!("no timerfd; bus sleeps use async-io timers");
        }
        LineTimer { fd, blocking: false }
    }

    /// A timer whose sleeps block the calling thread: only for a thread that
    /// runs nothing but one bus loop.
    pub fn blocking() -> LineTimer {
        LineTimer { fd: None, blocking: true }
    }

    /// Whether sleeps block the thread (see [`LineTimer::blocking`]).
    pub fn is_blocking(&self) -> bool {
        self.blocking
    }

    /// Sleeps until `until`; returns at once if it has passed. Dropping the
    /// future early (a race lost to a read) disarms the timer, so no stale
    /// expiry wakes the reactor later.
    pub async fn sleep_until(&self, until: Instant) {
        if self.blocking {
            block_until(until);
            return;
        }
        let Some(fd) = &self.fd else {
            Timer::at(until).await;
            return;
        };
        let mut armed = Armed { fd: fd.get_ref(), armed: false };
        loop {
            let now = Instant::now();
            if until <= now {
                armed.armed = false;
                return;
            }
            if !armed.arm(until - now) || fd.readable().await.is_err() {
                armed.disarm();
                Timer::at(until).await;
                return;
            }
            // Clears the expiry; a stale one (an earlier sleep's) only costs a
            // pass of this loop, which re-checks the time.
            let mut count = [0u8; 8];
            let _ = rustix::io::read(fd.get_ref(), &mut count);
            armed.armed = false;
        }
    }
}

/// Sleeps the thread until `until` (nanosleep may end early on a signal).
fn block_until(until: Instant) {
    loop {
        let now = Instant::now();
        if until <= now {
            return;
        }
        std::thread::sleep(until - now);
    }
}

/// Disarms the timerfd when a sleep ends before it expired.
struct Armed<'a> {
    fd: &'a OwnedFd,
    armed: bool,
}

impl Armed<'_> {
    fn arm(&mut self, after: Duration) -> bool {
        // A zero it_value would disarm the timer instead of firing at once.
        let after = after.max(Duration::from_micros(1));
        let value = Timespec {
            tv_sec: i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(after.subsec_nanos()),
        };
        let spec = Itimerspec { it_interval: Timespec { tv_sec: 0, tv_nsec: 0 }, it_value: value };
        self.armed = timerfd_settime(self.fd, TimerfdTimerFlags::empty(), &spec).is_ok();
        self.armed
    }

    fn disarm(&mut self) {
        if self.armed {
            let zero = Timespec { tv_sec: 0, tv_nsec: 0 };
            let _ = timerfd_settime(
                self.fd,
                TimerfdTimerFlags::empty(),
                &Itimerspec { it_interval: zero, it_value: zero },
            );
            self.armed = false;
        }
    }
}

impl Drop for Armed<'_> {
    fn drop(&mut self) {
        self.disarm();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleeps_until_the_deadline_and_survives_a_cancelled_sleep() {
        let timer = LineTimer::new();
        async_io::block_on(async {
            // A sleep cancelled early leaves nothing behind...
            let early = Instant::now() + Duration::from_millis(1);
            let cancelled = futures_lite::future::or(
                async {
                    timer.sleep_until(Instant::now() + Duration::from_secs(60)).await;
                    false
                },
                async {
                    Timer::at(early).await;
                    true
                },
            )
            .await;
            assert!(cancelled);
            // ...and the next sleep still ends at its own deadline, not before.
            let until = Instant::now() + Duration::from_millis(5);
            timer.sleep_until(until).await;
            assert!(Instant::now() >= until);
            // A deadline in the past returns at once.
            timer.sleep_until(Instant::now() - Duration::from_millis(1)).await;
        });
    }

    #[test]
    fn a_blocking_timer_sleeps_the_thread_to_the_deadline() {
        let timer = LineTimer::blocking();
        assert!(timer.is_blocking() && !LineTimer::new().is_blocking());
        let until = Instant::now() + Duration::from_millis(5);
        futures_lite::future::block_on(timer.sleep_until(until));
        assert!(Instant::now() >= until);
    }
}
