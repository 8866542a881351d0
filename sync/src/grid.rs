//! One grid of ticks for the many per-domain tasks of a server. A server with N domains runs
//! a failover driver per replica and a ticker at each end of each domain's stream. Each ticking
//! at its own phase, the process would wake thousands of times a heartbeat for a few
//! microseconds of work each, and the wake-ups, not the work, would be its idle cost. Ticking on
//! multiples of the period since one instant of the process, they fall due together and the
//! runtime serves them in one wake-up.

use std::sync::OnceLock;
use std::time::Duration;

use tokio::time::{Instant, Interval, MissedTickBehavior};

/// The instant the grid counts from: the first time a ticker of this process asked.
fn origin() -> Instant {
    static ORIGIN: OnceLock<std::time::Instant> = OnceLock::new();
    Instant::from_std(*ORIGIN.get_or_init(std::time::Instant::now))
}

/// The first multiple of `period` after `origin` that is later than `now`.
fn next_after(origin: Instant, now: Instant, period: Duration) -> Instant {
    let period = period.as_nanos().max(1);
    let since = now.saturating_duration_since(origin).as_nanos();
    let at = (since / period + 1) * period;
    origin + Duration::from_nanos(u64::try_from(at).unwrap_or(u64::MAX))
}

/// The next instant on the grid of `period`, for a task that sleeps rather than ticks.
pub(crate) fn next(period: Duration) -> Instant {
    let origin = origin();
    next_after(origin, Instant::now(), period)
}

/// A ticker of `period` whose first tick is at once and whose later ticks fall on the grid; a
/// tick missed while the task was busy is skipped, and the ticks stay on the grid.
pub(crate) fn interval(period: Duration) -> Interval {
    let period = period.max(Duration::from_millis(1));
    // The origin first: a clock read before it would fall before the grid.
    let origin = origin();
    let now = Instant::now();
    // A start one period before the next grid point: already due, so the first tick is at once,
    // and the schedule that follows is the grid's.
    let start = next_after(origin, now, period).checked_sub(period).unwrap_or(now).min(now);
    let mut ticker = tokio::time::interval_at(start, period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    ticker
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_started_apart_fall_due_together() {
        let o = Instant::now();
        let ms = Duration::from_millis;
        assert_eq!(next_after(o, o, ms(500)), o + ms(500));
        assert_eq!(next_after(o, o + ms(1_234), ms(500)), o + ms(1_500));
        assert_eq!(next_after(o, o + ms(1_500), ms(500)), o + ms(2_000), "a point reached is not next");
        assert_eq!(next_after(o, o + ms(1_100), ms(500)), next_after(o, o + ms(1_420), ms(500)));
        assert_eq!(next_after(o, o + ms(7), Duration::ZERO), o + ms(7) + Duration::from_nanos(1));
    }

    /// The instants at which `ticker` ticks over `n` ticks.
    async fn ticks(mut ticker: Interval, n: usize) -> Vec<Instant> {
        let mut at = Vec::new();
        for _ in 0..n {
            at.push(ticker.tick().await);
        }
        at
    }

    #[tokio::test]
    async fn the_first_tick_is_at_once_and_the_next_on_the_grid() {
        let period = Duration::from_millis(40);
        let a = interval(period);
        let started = Instant::now();
        tokio::time::sleep(Duration::from_millis(15)).await;
        let b = interval(period);
        let (a, b) = tokio::join!(ticks(a, 6), ticks(b, 5));
        assert!(a[0] <= started, "the first tick is due at once");
        for t in a[1..].iter().chain(&b[1..]) {
            assert_eq!(*t, next_after(origin(), *t - Duration::from_nanos(1), period), "a tick off the grid");
        }
        assert!(b[1..].iter().any(|t| a.contains(t)), "two tickers of one period never ticked together");
    }
}
