//! The archive's Parquet schema, version [`SCHEMA_VERSION`], and its mapping to and from
//! [`Event`]. `docs/archive.md` documents every column for readers outside Footfall.
//!
//! The mapping is lossless: an event read back equals the event written, so reprocessing sees
//! exactly what the processor saw.

use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, FixedSizeBinaryBuilder, Int64Builder, MapBuilder, MapFieldNames, StringBuilder,
    TimestampMicrosecondBuilder, UInt32Builder, UInt64Builder,
};
use arrow_array::{
    Array, BooleanArray, FixedSizeBinaryArray, Int64Array, MapArray, RecordBatch, StringArray,
    TimestampMicrosecondArray, UInt32Array, UInt64Array,
};
use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use footfall_model::event::{Event, Protocol, Revenue, Utm};

/// Version of the column layout, written to each file's key-value metadata under
/// [`SCHEMA_VERSION_KEY`] and into the path (`events/v1/...`). Bump it when a column changes
/// meaning or type, and keep reading the old versions.
pub const SCHEMA_VERSION: u32 = 1;

/// The Parquet key-value metadata key that holds [`SCHEMA_VERSION`].
pub const SCHEMA_VERSION_KEY: &str = "footfall.archive.schema_version";

/// An archived event: the event and the log position it was read from.
#[derive(Debug, Clone, PartialEq)]
pub struct ArchivedEvent {
    /// Log partition.
    pub partition: u32,
    /// Offset within the partition.
    pub offset: u64,
    /// The event.
    pub event: Event,
}

/// Errors of decoding a record batch.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// A column is missing or has another type.
    #[error("archive column {0:?} is missing or has an unexpected type")]
    Column(&'static str),
    /// A value is out of its domain (an unknown protocol name).
    #[error("archive column {column:?} holds an unexpected value {value:?}")]
    Value {
        /// The column.
        column: &'static str,
        /// The value.
        value: String,
    },
    /// Arrow refused the batch.
    #[error(transparent)]
    Arrow(#[from] arrow_schema::ArrowError),
}

fn utc_micros() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn props_type() -> DataType {
    DataType::Map(
        Arc::new(Field::new(
            "entries",
            DataType::Struct(Fields::from(vec![
                Field::new("keys", DataType::Utf8, false),
                Field::new("values", DataType::Utf8, true),
            ])),
            false,
        )),
        false,
    )
}

/// The Arrow schema of archive files, in column order.
pub fn schema() -> SchemaRef {
    let s = |name: &str| Field::new(name, DataType::Utf8, false);
    let o = |name: &str| Field::new(name, DataType::Utf8, true);
    Arc::new(Schema::new(vec![
        Field::new("partition", DataType::UInt32, false),
        Field::new("offset", DataType::UInt64, false),
        Field::new("event_id", DataType::FixedSizeBinary(16), false),
        Field::new("site_id", DataType::UInt64, false),
        Field::new("received_at", utc_micros(), false),
        Field::new("timestamp", utc_micros(), false),
        s("name"),
        s("hostname"),
        s("path"),
        o("title"),
        o("referrer"),
        o("utm_source"),
        o("utm_medium"),
        o("utm_campaign"),
        o("utm_term"),
        o("utm_content"),
        Field::new("props", props_type(), false),
        Field::new("revenue_minor", DataType::Int64, true),
        o("revenue_currency"),
        Field::new("engagement_ms", DataType::UInt64, true),
        Field::new("interactive", DataType::Boolean, false),
        Field::new("visitor_id", DataType::UInt64, false),
        Field::new("prev_visitor_id", DataType::UInt64, true),
        Field::new("session_id", DataType::UInt64, true),
        s("user_agent"),
        o("screen"),
        o("language"),
        o("country"),
        o("region"),
        o("city"),
        s("protocol"),
        o("bot"),
    ]))
}

/// The archive's name of a protocol.
pub fn protocol_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Plausible => "plausible",
        Protocol::Ga4MeasurementProtocol => "ga4_mp",
        Protocol::AccessLog => "access_log",
        Protocol::Accounting => "accounting",
        Protocol::Ga4Gtag => "ga4_gtag",
    }
}

fn protocol_from_name(s: &str) -> Option<Protocol> {
    Some(match s {
        "plausible" => Protocol::Plausible,
        "ga4_mp" => Protocol::Ga4MeasurementProtocol,
        "access_log" => Protocol::AccessLog,
        "accounting" => Protocol::Accounting,
        "ga4_gtag" => Protocol::Ga4Gtag,
        _ => return None,
    })
}

/// Builds a record batch of `rows`, in their order.
///
/// # Errors
/// [`SchemaError::Arrow`] if Arrow refuses the columns (it should not).
pub fn to_record_batch(rows: &[ArchivedEvent]) -> Result<RecordBatch, SchemaError> {
    let n = rows.len();
    let mut partition = UInt32Builder::with_capacity(n);
    let mut offset = UInt64Builder::with_capacity(n);
    let mut event_id = FixedSizeBinaryBuilder::with_capacity(n, 16);
    let mut site_id = UInt64Builder::with_capacity(n);
    let mut received_at = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut timestamp = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut strings: Vec<StringBuilder> = (0..19).map(|_| StringBuilder::new()).collect();
    let mut props = MapBuilder::new(
        Some(MapFieldNames {
            entry: "entries".into(),
            key: "keys".into(),
            value: "values".into(),
        }),
        StringBuilder::new(),
        StringBuilder::new(),
    );
    let mut revenue_minor = Int64Builder::with_capacity(n);
    let mut engagement_ms = UInt64Builder::with_capacity(n);
    let mut interactive = BooleanBuilder::with_capacity(n);
    let mut visitor_id = UInt64Builder::with_capacity(n);
    let mut prev_visitor_id = UInt64Builder::with_capacity(n);
    let mut session_id = UInt64Builder::with_capacity(n);
    for r in rows {
        let e = &r.event;
        partition.append_value(r.partition);
        offset.append_value(r.offset);
        event_id.append_value(e.event_id.to_be_bytes())?;
        site_id.append_value(e.site_id);
        received_at.append_value(e.received_at_us);
        timestamp.append_value(e.timestamp_us);
        let texts: [Option<&str>; 19] = [
            Some(&e.name),
            Some(&e.hostname),
            Some(&e.path),
            e.title.as_deref(),
            e.referrer.as_deref(),
            e.utm.source.as_deref(),
            e.utm.medium.as_deref(),
            e.utm.campaign.as_deref(),
            e.utm.term.as_deref(),
            e.utm.content.as_deref(),
            e.revenue.as_ref().map(|r| r.currency.as_str()),
            Some(&e.user_agent),
            e.screen.as_deref(),
            e.language.as_deref(),
            e.country.as_deref(),
            e.region.as_deref(),
            e.city.as_deref(),
            Some(protocol_name(e.protocol)),
            e.bot.as_deref(),
        ];
        for (b, t) in strings.iter_mut().zip(texts) {
            b.append_option(t);
        }
        for (k, v) in &e.props {
            props.keys().append_value(k);
            props.values().append_value(v);
        }
        props.append(true)?;
        revenue_minor.append_option(e.revenue.as_ref().map(|r| r.amount_minor));
        engagement_ms.append_option(e.engagement_ms);
        interactive.append_value(e.interactive);
        visitor_id.append_value(e.visitor_id);
        prev_visitor_id.append_option(e.prev_visitor_id);
        session_id.append_option(e.session_id);
    }
    let mut s = strings
        .into_iter()
        .map(|mut b| Arc::new(b.finish()) as Arc<dyn Array>);
    let mut next = || {
        s.next()
            .unwrap_or_else(|| Arc::new(StringArray::from(Vec::<String>::new())))
    };
    let (name, hostname, path, title, referrer) = (next(), next(), next(), next(), next());
    let (utm_source, utm_medium, utm_campaign, utm_term, utm_content) =
        (next(), next(), next(), next(), next());
    let revenue_currency = next();
    let user_agent = next();
    let (screen, language, country, region, city) = (next(), next(), next(), next(), next());
    let (protocol, bot) = (next(), next());
    let columns: Vec<Arc<dyn Array>> = vec![
        Arc::new(partition.finish()),
        Arc::new(offset.finish()),
        Arc::new(event_id.finish()),
        Arc::new(site_id.finish()),
        Arc::new(received_at.finish()),
        Arc::new(timestamp.finish()),
        name,
        hostname,
        path,
        title,
        referrer,
        utm_source,
        utm_medium,
        utm_campaign,
        utm_term,
        utm_content,
        Arc::new(props.finish()),
        Arc::new(revenue_minor.finish()),
        revenue_currency,
        Arc::new(engagement_ms.finish()),
        Arc::new(interactive.finish()),
        Arc::new(visitor_id.finish()),
        Arc::new(prev_visitor_id.finish()),
        Arc::new(session_id.finish()),
        user_agent,
        screen,
        language,
        country,
        region,
        city,
        protocol,
        bot,
    ];
    Ok(RecordBatch::try_new(schema(), columns)?)
}

fn column<'a, T: 'static>(
    batch: &'a RecordBatch,
    name: &'static str,
) -> Result<&'a T, SchemaError> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or(SchemaError::Column(name))
}

fn text(a: &StringArray, i: usize) -> Option<String> {
    (!a.is_null(i)).then(|| a.value(i).to_string())
}

fn number<T>(valid: bool, v: T) -> Option<T> {
    valid.then_some(v)
}

/// Reads the rows of a record batch written by [`to_record_batch`].
///
/// # Errors
/// [`SchemaError`] naming a column that is missing, mistyped or holds a value out of its
/// domain.
pub fn from_record_batch(batch: &RecordBatch) -> Result<Vec<ArchivedEvent>, SchemaError> {
    let partition: &UInt32Array = column(batch, "partition")?;
    let offset: &UInt64Array = column(batch, "offset")?;
    let event_id: &FixedSizeBinaryArray = column(batch, "event_id")?;
    let site_id: &UInt64Array = column(batch, "site_id")?;
    let received_at: &TimestampMicrosecondArray = column(batch, "received_at")?;
    let timestamp: &TimestampMicrosecondArray = column(batch, "timestamp")?;
    let t = |name: &'static str| column::<StringArray>(batch, name);
    let (name, hostname, path, title, referrer) = (
        t("name")?,
        t("hostname")?,
        t("path")?,
        t("title")?,
        t("referrer")?,
    );
    let (utm_source, utm_medium, utm_campaign, utm_term, utm_content) = (
        t("utm_source")?,
        t("utm_medium")?,
        t("utm_campaign")?,
        t("utm_term")?,
        t("utm_content")?,
    );
    let props: &MapArray = column(batch, "props")?;
    let prop_keys = props
        .keys()
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or(SchemaError::Column("props"))?;
    let prop_values = props
        .values()
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or(SchemaError::Column("props"))?;
    let revenue_minor: &Int64Array = column(batch, "revenue_minor")?;
    let revenue_currency = t("revenue_currency")?;
    let engagement_ms: &UInt64Array = column(batch, "engagement_ms")?;
    let interactive: &BooleanArray = column(batch, "interactive")?;
    let visitor_id: &UInt64Array = column(batch, "visitor_id")?;
    let prev_visitor_id: &UInt64Array = column(batch, "prev_visitor_id")?;
    let session_id: &UInt64Array = column(batch, "session_id")?;
    let (user_agent, screen, language) = (t("user_agent")?, t("screen")?, t("language")?);
    let (country, region, city) = (t("country")?, t("region")?, t("city")?);
    let (protocol, bot) = (t("protocol")?, t("bot")?);
    let offsets = props.value_offsets();
    (0..batch.num_rows())
        .map(|i| {
            let id: [u8; 16] = event_id
                .value(i)
                .try_into()
                .map_err(|_| SchemaError::Column("event_id"))?;
            let proto = protocol.value(i);
            let protocol = protocol_from_name(proto).ok_or_else(|| SchemaError::Value {
                column: "protocol",
                value: proto.to_string(),
            })?;
            let (start, end) = (offsets[i] as usize, offsets[i + 1] as usize);
            let props = (start..end)
                .map(|j| {
                    (
                        prop_keys.value(j).to_string(),
                        prop_values.value(j).to_string(),
                    )
                })
                .collect();
            let revenue = match (
                number(!revenue_minor.is_null(i), revenue_minor.value(i)),
                text(revenue_currency, i),
            ) {
                (Some(amount_minor), Some(currency)) => Some(Revenue {
                    amount_minor,
                    currency,
                }),
                _ => None,
            };
            Ok(ArchivedEvent {
                partition: partition.value(i),
                offset: offset.value(i),
                event: Event {
                    event_id: u128::from_be_bytes(id),
                    site_id: site_id.value(i),
                    received_at_us: received_at.value(i),
                    timestamp_us: timestamp.value(i),
                    name: name.value(i).to_string(),
                    hostname: hostname.value(i).to_string(),
                    path: path.value(i).to_string(),
                    title: text(title, i),
                    referrer: text(referrer, i),
                    utm: Utm {
                        source: text(utm_source, i),
                        medium: text(utm_medium, i),
                        campaign: text(utm_campaign, i),
                        term: text(utm_term, i),
                        content: text(utm_content, i),
                    },
                    props,
                    revenue,
                    engagement_ms: number(!engagement_ms.is_null(i), engagement_ms.value(i)),
                    interactive: interactive.value(i),
                    visitor_id: visitor_id.value(i),
                    prev_visitor_id: number(!prev_visitor_id.is_null(i), prev_visitor_id.value(i)),
                    session_id: number(!session_id.is_null(i), session_id.value(i)),
                    user_agent: user_agent.value(i).to_string(),
                    screen: text(screen, i),
                    language: text(language, i),
                    country: text(country, i),
                    region: text(region, i),
                    city: text(city, i),
                    protocol,
                    bot: text(bot, i),
                },
            })
        })
        .collect()
}
