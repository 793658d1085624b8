//! The visitors sketch: a mergeable distinct count of visitor ids.
//!
//! Exact while a cell has at most [`EXACT_LIMIT`] distinct visitors (a sorted set of the
//! 64-bit visitor hashes), then a HyperLogLog sketch from Apache DataSketches (`datasketches`
//! crate, `HllSketch` with `lg_k` = [`HLL_LG_K`], 4-bit registers). The exact tier is our own
//! because DataSketches' coupon modes map 64-bit hashes to 26-bit coupons and interpolate
//! their estimate, so they are not exact; DESIGN §5 asks for exact counts below 1,000.
//!
//! Relative standard error of the HLL tier: 1.04/√(2^12) ≈ 1.63 % (Flajolet et al., 2007;
//! DataSketches' HLL accuracy docs give ≈ 1.6 % for lg_k 12 with the HIP estimator).

use datasketches::hll::{HllSketch, HllType, HllUnion};

/// Largest number of distinct visitors counted exactly.
pub const EXACT_LIMIT: usize = 1024;
/// log2 of the number of HLL registers.
pub const HLL_LG_K: u8 = 12;
/// Relative standard error of the HLL tier (1.04 / √k).
pub const HLL_RELATIVE_ERROR: f64 = 0.01625;

const TAG_EXACT: u8 = 1;
const TAG_HLL: u8 = 2;

/// Errors of [`VisitorSketch::from_bytes`].
#[derive(Debug, thiserror::Error)]
pub enum SketchError {
    /// The bytes do not hold a sketch.
    #[error("visitors sketch is corrupt: {0}")]
    Corrupt(String),
}

/// A distinct count of visitor ids; see the module docs.
#[derive(Clone, Debug)]
pub enum VisitorSketch {
    /// Sorted, de-duplicated visitor ids.
    Exact(Vec<u64>),
    /// HyperLogLog past [`EXACT_LIMIT`].
    Hll(Box<HllSketch>),
}

impl Default for VisitorSketch {
    fn default() -> Self {
        VisitorSketch::Exact(Vec::new())
    }
}

impl PartialEq for VisitorSketch {
    fn eq(&self, other: &Self) -> bool {
        self.to_bytes() == other.to_bytes()
    }
}

fn new_hll() -> HllSketch {
    // lg_k 12 is within the library's accepted range 4..=21, so this cannot fail.
    HllSketch::new(HLL_LG_K, HllType::Hll4).unwrap_or_else(|_| unreachable!("lg_k 12 is valid"))
}

/// The sorted, de-duplicated union of two sorted, de-duplicated slices.
fn merge_sorted(a: &[u64], b: &[u64]) -> Vec<u64> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => {
                out.push(a[i]);
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                out.push(b[j]);
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

impl VisitorSketch {
    /// An empty sketch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one visitor id.
    pub fn insert(&mut self, visitor_id: u64) {
        match self {
            VisitorSketch::Exact(ids) => {
                if let Err(pos) = ids.binary_search(&visitor_id) {
                    ids.insert(pos, visitor_id);
                    if ids.len() > EXACT_LIMIT {
                        self.promote();
                    }
                }
            }
            VisitorSketch::Hll(h) => h.update(visitor_id),
        }
    }

    fn promote(&mut self) {
        if let VisitorSketch::Exact(ids) = self {
            let mut h = new_hll();
            for id in ids.iter() {
                h.update(*id);
            }
            *self = VisitorSketch::Hll(Box::new(h));
        }
    }

    /// Merges `other` into `self` (set union).
    pub fn merge(&mut self, other: &VisitorSketch) {
        let theirs = match (&mut *self, other) {
            (VisitorSketch::Exact(_), VisitorSketch::Exact(ids)) if ids.len() <= 8 => {
                // A delta of a few ids (the processor's usual merge): sorted inserts in place.
                for id in ids {
                    self.insert(*id);
                }
                return;
            }
            (VisitorSketch::Exact(mine), VisitorSketch::Exact(ids)) => {
                // Both sorted: one linear merge rather than a sorted insert per id (each of
                // which moves the tail of the vector), which dominated 30-day queries.
                *mine = merge_sorted(mine, ids);
                if mine.len() > EXACT_LIMIT {
                    self.promote();
                }
                return;
            }
            (VisitorSketch::Hll(h), VisitorSketch::Exact(ids)) => {
                for id in ids {
                    h.update(*id);
                }
                return;
            }
            (_, VisitorSketch::Hll(h)) => h,
        };
        match self {
            VisitorSketch::Exact(ids) => {
                let mut merged = (**theirs).clone();
                for id in ids.iter() {
                    merged.update(*id);
                }
                *self = VisitorSketch::Hll(Box::new(merged));
            }
            VisitorSketch::Hll(mine) => {
                // lg_max_k 12 is valid, so `new` cannot fail.
                let mut union =
                    HllUnion::new(HLL_LG_K).unwrap_or_else(|_| unreachable!("valid lg_k"));
                union.update(mine);
                union.update(theirs);
                **mine = union.to_sketch(HllType::Hll4);
            }
        }
    }

    /// The union of `sketches` in one pass: the exact tiers' ids are gathered, sorted and
    /// de-duplicated once (rather than merged pairwise, each merge copying the set so far),
    /// and the HLL tiers go through one `HllUnion`. Same set as merging them one by one.
    pub fn union_all<'a>(sketches: impl IntoIterator<Item = &'a VisitorSketch>) -> VisitorSketch {
        let mut ids: Vec<u64> = Vec::new();
        let mut union: Option<HllUnion> = None;
        for s in sketches {
            match s {
                VisitorSketch::Exact(more) => ids.extend_from_slice(more),
                VisitorSketch::Hll(h) => union
                    .get_or_insert_with(|| {
                        // lg_max_k 12 is valid, so `new` cannot fail.
                        HllUnion::new(HLL_LG_K).unwrap_or_else(|_| unreachable!("valid lg_k"))
                    })
                    .update(h),
            }
        }
        if union.is_none() {
            // Whether the union stays exact depends on its distinct count. (An HLL absorbs
            // repeated ids, so with one the ids go in unsorted.)
            ids.sort_unstable();
            ids.dedup();
        }
        match union {
            None if ids.len() <= EXACT_LIMIT => VisitorSketch::Exact(ids),
            None => {
                let mut h = new_hll();
                ids.iter().for_each(|id| h.update(*id));
                VisitorSketch::Hll(Box::new(h))
            }
            Some(u) => {
                let mut h = u.to_sketch(HllType::Hll4);
                ids.iter().for_each(|id| h.update(*id));
                VisitorSketch::Hll(Box::new(h))
            }
        }
    }

    /// The distinct count: exact in the exact tier, the HLL estimate rounded otherwise.
    pub fn estimate(&self) -> u64 {
        match self {
            VisitorSketch::Exact(ids) => ids.len() as u64,
            VisitorSketch::Hll(h) => h.estimate().round().max(0.0) as u64,
        }
    }

    /// Whether the count is an estimate rather than exact.
    pub fn is_approximate(&self) -> bool {
        matches!(self, VisitorSketch::Hll(_))
    }

    /// Whether nothing was inserted.
    pub fn is_empty(&self) -> bool {
        match self {
            VisitorSketch::Exact(ids) => ids.is_empty(),
            VisitorSketch::Hll(h) => h.is_empty(),
        }
    }

    /// Serialises: `[1] ++ ids as u64 LE` for the exact tier, `[2] ++ DataSketches HLL bytes`
    /// (the library's compact, cross-language format) for the HLL tier.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            VisitorSketch::Exact(ids) => {
                let mut out = Vec::with_capacity(1 + ids.len() * 8);
                out.push(TAG_EXACT);
                for id in ids {
                    out.extend_from_slice(&id.to_le_bytes());
                }
                out
            }
            VisitorSketch::Hll(h) => {
                let mut out = vec![TAG_HLL];
                out.extend_from_slice(&h.serialize());
                out
            }
        }
    }

    /// Reads what [`VisitorSketch::to_bytes`] wrote.
    ///
    /// # Errors
    /// [`SketchError::Corrupt`] when the tag or the length is wrong or the HLL bytes do not
    /// deserialise.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SketchError> {
        match bytes.split_first() {
            None => Ok(Self::default()),
            Some((&TAG_EXACT, rest)) => {
                if rest.len() % 8 != 0 {
                    return Err(SketchError::Corrupt(format!(
                        "exact tier of {} bytes is not a multiple of 8",
                        rest.len()
                    )));
                }
                let ids: Vec<u64> = rest
                    .chunks_exact(8)
                    .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                    .collect();
                if ids.windows(2).any(|w| w[0] >= w[1]) {
                    return Err(SketchError::Corrupt("exact tier is not sorted".into()));
                }
                Ok(VisitorSketch::Exact(ids))
            }
            Some((&TAG_HLL, rest)) => HllSketch::deserialize(rest)
                .map(|h| VisitorSketch::Hll(Box::new(h)))
                .map_err(|e| SketchError::Corrupt(e.to_string())),
            Some((tag, _)) => Err(SketchError::Corrupt(format!("unknown tag {tag}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic stream of well-spread ids (SplitMix64, Steele et al. 2014).
    fn ids(seed: u64, n: usize) -> Vec<u64> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = x;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                z ^ (z >> 31)
            })
            .collect()
    }

    #[test]
    fn exact_below_limit_with_duplicates() {
        let mut s = VisitorSketch::new();
        let v = ids(1, 999);
        for id in v.iter().chain(v.iter()) {
            s.insert(*id);
        }
        assert_eq!(s.estimate(), 999);
        assert!(!s.is_approximate());
    }

    #[test]
    fn merge_of_overlapping_sets_is_their_union() {
        let all = ids(2, 900);
        let (mut a, mut b) = (VisitorSketch::new(), VisitorSketch::new());
        all[..600].iter().for_each(|i| a.insert(*i));
        all[300..].iter().for_each(|i| b.insert(*i));
        a.merge(&b);
        assert_eq!(a.estimate(), 900);
    }

    #[test]
    fn merge_of_exact_sets_past_the_limit_promotes() {
        // 800 + 800 ids sharing 300: a union of 1,300, past the exact tier's 1,024.
        let all = ids(5, 1300);
        let (mut a, mut b) = (VisitorSketch::new(), VisitorSketch::new());
        all[..800].iter().for_each(|i| a.insert(*i));
        all[500..].iter().for_each(|i| b.insert(*i));
        assert!(!a.is_approximate() && !b.is_approximate());
        a.merge(&b);
        assert!(a.is_approximate());
        let rel = (a.estimate() as f64 - 1300.0).abs() / 1300.0;
        assert!(rel <= 3.0 * HLL_RELATIVE_ERROR, "relative error {rel}");
        // Exact on both sides and below the limit: the exact union, whatever the order.
        let (mut c, mut d) = (VisitorSketch::new(), VisitorSketch::new());
        all[..600].iter().for_each(|i| c.insert(*i));
        all[400..1000].iter().for_each(|i| d.insert(*i));
        let mut e = d.clone();
        c.merge(&d);
        e.merge(&VisitorSketch::Exact({
            let mut v = all[..600].to_vec();
            v.sort_unstable();
            v
        }));
        assert_eq!(c.estimate(), 1000);
        assert_eq!(c, e);
    }

    #[test]
    fn union_all_counts_the_union_of_both_tiers() {
        let all = ids(6, 20_000);
        // Exact parts only, below the limit: exact.
        let parts: Vec<VisitorSketch> = all[..900]
            .chunks(200)
            .map(|c| {
                let mut s = VisitorSketch::new();
                // Every part also holds the first 50 ids.
                c.iter()
                    .chain(all[..900].iter().take(50))
                    .for_each(|i| s.insert(*i));
                s
            })
            .collect();
        let u = VisitorSketch::union_all(&parts);
        assert!(!u.is_approximate());
        assert_eq!(u.estimate(), 900);
        // Exact and HLL parts: 20,000 distinct in all, within three standard errors.
        let mut parts: Vec<VisitorSketch> = Vec::new();
        for c in all.chunks(2_500) {
            let mut s = VisitorSketch::new();
            c.iter().for_each(|i| s.insert(*i));
            parts.push(s); // 2,500 ids: the HLL tier
            let mut small = VisitorSketch::new();
            c[..300].iter().for_each(|i| small.insert(*i));
            parts.push(small); // overlapping exact parts
        }
        let u = VisitorSketch::union_all(&parts);
        let rel = (u.estimate() as f64 - 20_000.0).abs() / 20_000.0;
        assert!(u.is_approximate());
        assert!(rel <= 3.0 * HLL_RELATIVE_ERROR, "relative error {rel}");
        assert_eq!(VisitorSketch::union_all(&[]).estimate(), 0);
    }

    #[test]
    fn union_all_equals_pairwise_merges_at_the_exact_limit() {
        for n in [1023usize, 1024, 1025, 1100] {
            let all = ids(7 + n as u64, n);
            // Ten overlapping parts: each part's ids plus the first 30 ids of the set.
            let parts: Vec<VisitorSketch> = all
                .chunks(n.div_ceil(10))
                .map(|c| {
                    let mut s = VisitorSketch::new();
                    c.iter().chain(&all[..30]).for_each(|i| s.insert(*i));
                    s
                })
                .collect();
            let mut pairwise = VisitorSketch::new();
            parts.iter().for_each(|p| pairwise.merge(p));
            let once = VisitorSketch::union_all(&parts);
            assert_eq!(once.is_approximate(), n > EXACT_LIMIT, "n = {n}");
            assert_eq!(pairwise.is_approximate(), n > EXACT_LIMIT, "n = {n}");
            if n <= EXACT_LIMIT {
                assert_eq!(once.estimate(), n as u64);
                assert_eq!(once, pairwise);
            } else {
                for s in [&once, &pairwise] {
                    let rel = (s.estimate() as f64 - n as f64).abs() / n as f64;
                    assert!(
                        rel <= 3.0 * HLL_RELATIVE_ERROR,
                        "n = {n}: relative error {rel}"
                    );
                }
            }
        }
    }

    #[test]
    fn hll_tier_within_three_standard_errors() {
        let n = 100_000usize;
        let all = ids(3, n);
        // Built as 10 parts merged, as the query merges hours and days.
        let mut total = VisitorSketch::new();
        for part in all.chunks(n / 10) {
            let mut s = VisitorSketch::new();
            part.iter().for_each(|i| s.insert(*i));
            total.merge(&s);
        }
        let est = total.estimate() as f64;
        let rel = (est - n as f64).abs() / n as f64;
        assert!(total.is_approximate());
        assert!(rel <= 3.0 * HLL_RELATIVE_ERROR, "relative error {rel}");
    }

    #[test]
    fn bytes_round_trip_both_tiers() {
        for n in [0usize, 5, 5000] {
            let mut s = VisitorSketch::new();
            ids(4, n).iter().for_each(|i| s.insert(*i));
            let back = VisitorSketch::from_bytes(&s.to_bytes()).unwrap();
            assert_eq!(back.estimate(), s.estimate());
        }
        assert!(VisitorSketch::from_bytes(&[1, 2, 3]).is_err());
        assert!(VisitorSketch::from_bytes(&[9]).is_err());
    }
}
