//! The cap on distinct values per (site, bucket, dimension) (DESIGN §4.3).
//!
//! A page, source or property can take unboundedly many values (a site that puts an order id
//! in its paths); past the cap, a bucket's new values are folded into
//! [`OTHER`](footfall_model::rollup::OTHER), as Google Analytics does for rows past its
//! per-day table limits, and the query answer says so. The cap applies to each granularity's
//! bucket separately (an hour and its day each hold at most `limit` values).
//!
//! Admission is first come, first served in log order: a value is admitted when its cell is
//! created while the bucket holds fewer than `limit` cells, and once admitted it stays (cells
//! are never deleted: every created cell holds a visitor). The processor feeds cells in the
//! order the engine first touched them, and the count of a bucket's cells comes from the store
//! the first time the bucket is seen, so a restart from a checkpoint admits exactly the values
//! an uninterrupted run admits. Folded cells count as cells of the bucket too; they exist only
//! once the bucket is full, so that does not change which values are admitted. A reprocessed
//! generation's mirror (its late events) is not capped: its values follow the generation's.

use std::collections::HashMap;

use footfall_model::rollup::Dimension;
use footfall_model::rollup::{other_value, CellKey, Granularity};
use footfall_store::{CellRange, MIRROR_BIT};

/// One bucket of one dimension: (site, generation, granularity, dimension, bucket).
type Bucket = (u64, u32, Granularity, Dimension, i64);

fn bucket_of(k: &CellKey) -> Bucket {
    (
        k.site_id,
        k.generation,
        k.granularity,
        k.dimension,
        k.bucket,
    )
}

/// Where a cell delta goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Into its own cell.
    Keep,
    /// Into the bucket's `(other)` cell, whose key is given.
    Fold(CellKey),
    /// Nowhere: a zero delta for a cell that does not exist.
    Skip,
}

/// Counts of cells per bucket for the buckets a processor has touched.
#[derive(Debug)]
pub struct ValueCap {
    limit: u64,
    counts: HashMap<Bucket, u64>,
}

impl ValueCap {
    /// A cap of `limit` values per bucket (at least 1).
    pub fn new(limit: u64) -> Self {
        ValueCap {
            limit: limit.max(1),
            counts: HashMap::new(),
        }
    }

    /// The cap.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The single-bucket ranges, without repeats, of the `new_cells` (keys of cells that do
    /// not exist yet) whose buckets' counts are not known; read them with
    /// `Store::count_cells` and hand them to [`ValueCap::set_counts`] before routing.
    pub fn unknown_buckets<'a>(
        &self,
        new_cells: impl Iterator<Item = &'a CellKey>,
    ) -> Vec<CellRange> {
        let mut seen = std::collections::HashSet::new();
        new_cells
            .filter(|k| k.dimension.is_capped())
            .map(bucket_of)
            .filter(|b| !self.counts.contains_key(b) && seen.insert(*b))
            .map(
                |(site_id, generation, granularity, dimension, bucket)| CellRange {
                    site_id,
                    generation,
                    granularity,
                    dimension,
                    from: bucket,
                    to: bucket,
                },
            )
            .collect()
    }

    /// Records the counts read for `ranges` (same order).
    pub fn set_counts(&mut self, ranges: &[CellRange], counts: &[u64]) {
        for (r, n) in ranges.iter().zip(counts) {
            self.counts.insert(
                (r.site_id, r.generation, r.granularity, r.dimension, r.from),
                *n,
            );
        }
    }

    /// Decides where the delta for `key` goes; `exists` says whether its cell exists,
    /// `zero` whether the delta is zero. Call in the order the cells were first touched.
    pub fn route(&mut self, key: &CellKey, exists: bool, zero: bool) -> Route {
        // A mirror holds only a reprocessed generation's late events, and a value its
        // generation admitted must not fold there (a retraction would then miss its cell).
        if exists || !key.dimension.is_capped() || key.generation & MIRROR_BIT != 0 {
            return Route::Keep;
        }
        if zero {
            return Route::Skip;
        }
        let count = self.counts.entry(bucket_of(key)).or_insert(0);
        if *count < self.limit {
            *count += 1;
            Route::Keep
        } else {
            Route::Fold(CellKey {
                value: other_value(key.dimension, &key.value),
                ..key.clone()
            })
        }
    }

    /// Forgets every count (they are read again when needed).
    pub fn clear(&mut self) {
        self.counts.clear();
    }
}

#[cfg(test)]
mod tests {
    use footfall_model::rollup::{OTHER, PROP_SEPARATOR};

    use super::*;

    fn key(dimension: Dimension, bucket: i64, value: &str) -> CellKey {
        CellKey {
            site_id: 1,
            generation: 1,
            granularity: Granularity::Day,
            dimension,
            bucket,
            value: value.into(),
        }
    }

    #[test]
    fn new_values_past_the_limit_fold_and_admitted_values_stay() {
        let mut cap = ValueCap::new(2);
        let a = key(Dimension::Page, 10, "/a");
        let b = key(Dimension::Page, 10, "/b");
        let c = key(Dimension::Page, 10, "/c");
        // The store already holds one cell in bucket 10; none in bucket 11.
        let unknown = cap.unknown_buckets([&a, &b, &key(Dimension::Page, 11, "/z")].into_iter());
        assert_eq!(unknown.len(), 2);
        cap.set_counts(&unknown, &[1, 0]);
        assert_eq!(cap.route(&a, false, false), Route::Keep);
        let other = key(Dimension::Page, 10, OTHER);
        assert_eq!(cap.route(&b, false, false), Route::Fold(other.clone()));
        assert_eq!(cap.route(&c, false, false), Route::Fold(other));
        assert_eq!(
            cap.route(&b, true, false),
            Route::Keep,
            "an existing cell stays"
        );
        assert_eq!(
            cap.route(&key(Dimension::Page, 11, "/z"), false, false),
            Route::Keep,
            "each bucket has its own count"
        );
        assert_eq!(cap.route(&c, false, true), Route::Skip);
        assert!(cap.unknown_buckets([&a].into_iter()).is_empty());
    }

    #[test]
    fn totals_are_not_capped_and_properties_fold_under_their_name() {
        let mut cap = ValueCap::new(1);
        cap.set_counts(
            &cap.unknown_buckets([&key(Dimension::Prop, 5, "x")].into_iter()),
            &[1],
        );
        let plan = key(Dimension::Prop, 5, &format!("plan{PROP_SEPARATOR}gold"));
        assert_eq!(
            cap.route(&plan, false, false),
            Route::Fold(key(
                Dimension::Prop,
                5,
                &format!("plan{PROP_SEPARATOR}{OTHER}")
            ))
        );
        assert_eq!(
            cap.route(&key(Dimension::Total, 5, ""), false, false),
            Route::Keep
        );
        assert_eq!(
            cap.route(&key(Dimension::Ingest, 5, "bot"), false, false),
            Route::Keep
        );
        assert!(cap
            .unknown_buckets([&key(Dimension::Total, 6, "")].into_iter())
            .is_empty());
    }
}
