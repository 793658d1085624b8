//! An open visit and the contribution it has made to visit-scoped cells.

use chrono_tz::Tz;
use footfall_model::bucket::{day_bucket, hour_bucket};
use footfall_model::rollup::Dimension;
use serde::{Deserialize, Serialize};

/// The sums a visit adds to each visit-scoped cell it belongs to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct VisitRow {
    pub pageviews: i64,
    pub events: i64,
    pub bounces: i64,
    pub duration_s: i64,
    pub revenue_minor: i64,
}

/// Where a visit's row currently sits: its start buckets and its visit-scoped values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Contribution {
    pub hour: i64,
    pub day: i64,
    pub row: VisitRow,
    /// (dimension, value) pairs, the total (with an empty value) first.
    pub values: Vec<(Dimension, String)>,
}

/// An open visit; serialised with postcard into the store at each flush.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Visit {
    pub site_id: u64,
    pub visitor_id: u64,
    pub session_id: Option<u64>,
    /// Earliest and latest event time, µs.
    pub start_us: i64,
    pub last_us: i64,
    /// Receipt time of the latest-arriving event, µs.
    pub last_received_us: i64,
    /// Attributes of the earliest event: (event time, source, utm source/medium/campaign).
    pub first_event_us: i64,
    pub source: String,
    pub utm_source: Option<String>,
    pub utm_medium: Option<String>,
    pub utm_campaign: Option<String>,
    /// Other visit-scoped values of the earliest event: channel, referrer, geo, browser, OS,
    /// device.
    pub attributes: Vec<(Dimension, String)>,
    /// Entry and exit pageviews: (event time, path).
    pub entry: Option<(i64, String)>,
    pub exit: Option<(i64, String)>,
    pub pageviews: i64,
    pub events: i64,
    pub interactive_custom_events: i64,
    pub revenue_minor: i64,
    /// Hashes of the event-scoped (dimension, value) pairs already counted as a visit.
    pub seen: Vec<u64>,
    /// The time zone the visit's buckets are computed in (the site's at the visit's start).
    pub timezone: String,
    /// The generation the visit's cells are written to (the site's at the visit's start).
    pub generation: u32,
    pub contributed: Option<Contribution>,
}

impl Visit {
    pub fn tz(&self) -> Tz {
        self.timezone.parse().unwrap_or(Tz::UTC)
    }

    pub fn is_bounce(&self) -> bool {
        self.pageviews <= 1 && self.interactive_custom_events == 0
    }

    pub fn row(&self) -> VisitRow {
        VisitRow {
            pageviews: self.pageviews,
            events: self.events,
            bounces: i64::from(self.is_bounce()),
            duration_s: (self.last_us - self.start_us).max(0) / 1_000_000,
            revenue_minor: self.revenue_minor,
        }
    }

    /// The contribution the visit should make now.
    pub fn contribution(&self) -> Contribution {
        let tz = self.tz();
        let mut values = vec![
            (Dimension::Total, String::new()),
            (Dimension::Source, self.source.clone()),
        ];
        if let Some((_, path)) = &self.entry {
            values.push((Dimension::EntryPage, path.clone()));
        }
        values.extend(self.attributes.iter().cloned());
        for (dim, v) in [
            (Dimension::UtmSource, &self.utm_source),
            (Dimension::UtmMedium, &self.utm_medium),
            (Dimension::UtmCampaign, &self.utm_campaign),
        ] {
            if let Some(v) = v {
                values.push((dim, v.clone()));
            }
        }
        Contribution {
            hour: hour_bucket(tz, self.start_us),
            day: day_bucket(tz, self.start_us),
            row: self.row(),
            values,
        }
    }
}
