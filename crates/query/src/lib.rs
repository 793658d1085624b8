//! Queries over rollups, shaped like Plausible's Stats API v2 (DESIGN §4.7).
//!
//! - [`request`]: parses and validates a query body into a [`request::Query`];
//! - [`range`]: resolves `date_range` in the site's time zone;
//! - [`execute`]: plans the cell reads, merges cells (sums add, visitor sketches merge) and
//!   computes rates from the sums.
//!
//! Supported shapes: no dimension (totals); one time dimension (`time:hour|day|week|month`,
//! zero-filled); one other dimension; or one time dimension plus one other dimension.
//! Filters apply to one dimension, which must be the breakdown dimension when there is one,
//! because each rollup is keyed by a single dimension.

pub mod execute;
pub mod range;
pub mod request;

/// A query that cannot be answered as asked; becomes `400` with the field named.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct QueryError {
    /// The offending field of the request (`metrics[1]`, `date_range`).
    pub field: String,
    /// What is wrong, for a person to read.
    pub message: String,
}

impl QueryError {
    /// A new error naming `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        QueryError {
            field: field.into(),
            message: message.into(),
        }
    }
}
