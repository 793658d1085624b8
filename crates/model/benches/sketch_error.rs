//! Accuracy of the visitors sketch as the query uses it: a 30-day range merged from daily
//! sketches that were themselves merged from hourly ones (DESIGN §5, "visitors sketch").
//!
//! Not a timing benchmark: it prints one JSON object to stdout with, for each true distinct
//! count `n`, the number of trials, how many were exact, and the root-mean-square relative error
//! over the trials next to the HLL tier's theoretical relative standard error
//! ([`HLL_RELATIVE_ERROR`], 1.04/√k from Flajolet et al., 2007). DESIGN's target: exact below
//! 1,000 distinct visitors; RMS error at most 1.1× the theoretical error above. `bench/run`
//! reads the JSON into the report.
//!
//! Each trial draws `n` distinct 64-bit visitor ids (SplitMix64 of a per-trial counter, so the
//! trials are independent), and gives each visitor one to three visits in hours drawn uniformly
//! from the 720 hours of the 30 days, as returning visitors do. Hourly sketches are merged into
//! daily ones one by one (as cell deltas merge into stored cells), and the 30 daily ones into
//! the range in one pass with `VisitorSketch::union_all` (as the query executor merges an
//! answer row); the range's estimate is compared with `n`.

use footfall_model::sketch::{VisitorSketch, HLL_RELATIVE_ERROR};

const DAYS: usize = 30;
const HOURS: usize = DAYS * 24;

/// SplitMix64 (Steele, Lea and Flood, 2014): a well-mixed 64-bit sequence from a counter.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The range estimate of one trial with `n` distinct visitors.
fn trial(seed: u64, n: usize) -> u64 {
    let mut hours: Vec<VisitorSketch> = (0..HOURS).map(|_| VisitorSketch::new()).collect();
    for i in 0..n as u64 {
        let visitor = splitmix64(seed.wrapping_mul(0x1_0000_0000).wrapping_add(i));
        let draw = splitmix64(visitor);
        let visits = 1 + (draw % 3) as usize;
        for v in 0..visits {
            let hour = (splitmix64(draw.wrapping_add(v as u64)) % HOURS as u64) as usize;
            hours[hour].insert(visitor);
        }
    }
    let days: Vec<VisitorSketch> = hours
        .chunks(24)
        .map(|day| {
            let mut daily = VisitorSketch::new();
            for hour in day {
                daily.merge(hour);
            }
            daily
        })
        .collect();
    VisitorSketch::union_all(&days).estimate()
}

fn main() {
    // (distinct visitors, trials): enough trials that the RMS is known to a few percent of itself
    // (its sampling error is about 1/√(2·trials)).
    let plan: [(usize, u64); 9] = [
        (10, 200),
        (500, 200),
        (999, 200),
        (1_100, 200),
        (2_000, 200),
        (5_000, 200),
        (50_000, 200),
        (200_000, 200),
        (1_000_000, 100),
    ];
    let quick = std::env::args().any(|a| a == "--quick");
    let mut rows = Vec::new();
    for (n, trials) in plan {
        let trials = if quick { trials.min(5) } else { trials };
        let mut exact = 0u64;
        let mut sum_sq = 0.0f64;
        let mut worst = 0.0f64;
        for t in 0..trials {
            let est = trial(n as u64 * 1_000 + t, n);
            if est == n as u64 {
                exact += 1;
            }
            let rel = (est as f64 - n as f64) / n as f64;
            sum_sq += rel * rel;
            worst = worst.max(rel.abs());
        }
        let rms = (sum_sq / trials as f64).sqrt();
        rows.push(serde_json::json!({
            "distinct": n,
            "trials": trials,
            "exact_trials": exact,
            "rms_relative_error": rms,
            "max_relative_error": worst,
            "theoretical_relative_error": HLL_RELATIVE_ERROR,
            "ratio_to_theory": rms / HLL_RELATIVE_ERROR,
        }));
    }
    println!(
        "{}",
        serde_json::json!({ "days": DAYS, "hours": HOURS, "sizes": rows })
    );
}
