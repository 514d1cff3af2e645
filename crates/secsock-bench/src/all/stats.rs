//! The suite's arithmetic, pure: medians of runs, percentiles of samples, rates.
//!
//! A figure of the suite is the median of its runs ([`median`]); a run's latency figures
//! are nearest-rank percentiles of its samples ([`percentile_of_sorted`]).

/// The median of `values`: the middle value, or the mean of the two middle values for an
/// even count. None when there is none. NaNs are ignored.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    })
}

/// The nearest-rank `p`-th percentile (0 < p ≤ 100) of `sorted`, which must be in
/// ascending order: the smallest sample that at least `p` % of the samples do not exceed.
/// None when there are no samples or `p` is outside (0, 100].
pub fn percentile_of_sorted(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() || p.is_nan() || p <= 0.0 || p > 100.0 {
        return None;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// The median (p50) and p99 of `samples` (sorted in place), in the samples' unit.
pub fn p50_p99(samples: &mut [u64]) -> Option<(u64, u64)> {
    samples.sort_unstable();
    Some((
        percentile_of_sorted(samples, 50.0)?,
        percentile_of_sorted(samples, 99.0)?,
    ))
}

/// Events per second from the times (any one clock, nanoseconds, ascending) at which they
/// completed, leaving out the first `skip` events (warm-up): the events after the
/// `skip`-th, over the time since it. None without at least two events in the window.
pub fn rate_after(times_ns: &[u64], skip: usize) -> Option<f64> {
    let first = *times_ns.get(skip)?;
    let last = *times_ns.last()?;
    let events = times_ns.len() - 1 - skip;
    (events > 0 && last > first).then(|| events as f64 / ((last - first) as f64 / 1e9))
}

/// The intervals between consecutive event times after the `skip`-th event.
pub fn intervals_after(times_ns: &[u64], skip: usize) -> Vec<u64> {
    times_ns
        .get(skip..)
        .unwrap_or_default()
        .windows(2)
        .map(|w| w[1].saturating_sub(w[0]))
        .collect()
}

/// `a / b`, None if either is missing or `b` is zero.
pub fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 => Some(a / b),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0]), Some(3.0));
        assert_eq!(median(&[5.0, 1.0, 4.0, 2.0, 3.0]), Some(3.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[f64::NAN, 2.0, 1.0, 3.0]), Some(2.0));
        assert_eq!(
            median(&[1e9, 1.0, 2.0]),
            Some(2.0),
            "an outlier does not move it"
        );
    }

    fn percentile(samples: &mut [u64], p: f64) -> Option<u64> {
        samples.sort_unstable();
        percentile_of_sorted(samples, p)
    }

    #[test]
    fn nearest_rank_percentiles() {
        let mut samples: Vec<u64> = (1..=100).rev().collect();
        assert_eq!(percentile(&mut samples, 50.0), Some(50));
        assert_eq!(percentile(&mut samples, 99.0), Some(99));
        assert_eq!(percentile(&mut samples, 100.0), Some(100));
        assert_eq!(percentile(&mut samples, 0.5), Some(1));
        assert_eq!(percentile(&mut samples, 0.0), None);
        assert_eq!(percentile(&mut samples, 101.0), None);
        assert_eq!(percentile(&mut [], 50.0), None);
        // Few samples: p99 is the largest, p50 the lower middle one.
        assert_eq!(p50_p99(&mut [30, 10, 20, 40]), Some((20, 40)));
        assert_eq!(p50_p99(&mut [7]), Some((7, 7)));
        assert_eq!(p50_p99(&mut []), None);
    }

    #[test]
    fn rates_leave_out_the_warm_up() {
        // Events at 0, 10 ms, then every 1 ms: after skipping two, 3 events in 3 ms.
        let ms = 1_000_000;
        let times = [0, 10 * ms, 11 * ms, 12 * ms, 13 * ms];
        let rate = rate_after(&times, 1).unwrap();
        assert!((rate - 1000.0).abs() < 1e-6, "{rate}");
        let all = rate_after(&times, 0).unwrap();
        assert!((all - 4.0 / 0.013).abs() < 1e-6, "{all}");
        assert_eq!(rate_after(&times, 4), None);
        assert_eq!(rate_after(&times, 9), None);
        assert_eq!(intervals_after(&times, 1), vec![ms, ms, ms]);
        assert_eq!(intervals_after(&times, 9), Vec::<u64>::new());
    }

    #[test]
    fn ratios_need_both_figures() {
        assert_eq!(ratio(Some(3.0), Some(2.0)), Some(1.5));
        assert_eq!(ratio(None, Some(2.0)), None);
        assert_eq!(ratio(Some(3.0), None), None);
        assert_eq!(ratio(Some(3.0), Some(0.0)), None);
    }
}
