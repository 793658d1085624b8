//! A keep-alive HTTP/1.1 client (hyper-util's pooled client) and the request bodies of the
//! two ingest protocols.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;

use crate::model::Hit;

/// The pooled client.
pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A client keeping up to `connections` idle connections to the target.
pub fn client(connections: usize) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(connections)
        .build(connector)
}

/// A site as the load generator sends to it (from `footfall sites create`'s output).
#[derive(Clone, Debug, serde::Deserialize)]
pub struct SiteInfo {
    /// The site's domain.
    pub domain: String,
    /// The GA4 measurement id (`G-…`).
    #[serde(default)]
    pub measurement_id: String,
    /// The Measurement Protocol secret.
    #[serde(default)]
    pub api_secret: String,
}

/// A ready request: method POST, path and query, headers, body; and how many events it
/// carries.
#[derive(Clone, Debug)]
pub struct Prepared {
    /// Path and query.
    pub path: String,
    /// Extra headers.
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: Bytes,
    /// Events in the body.
    pub events: u64,
}

/// One Plausible Events API request (`POST /api/event`) for a hit; the visitor's address
/// goes in `X-Forwarded-For`.
pub fn plausible(site: &SiteInfo, hit: &Hit) -> Prepared {
    let mut body = json!({
        "name": hit.name,
        "url": format!("https://{}{}", site.domain, hit.path),
        "domain": site.domain,
    });
    if let Some(r) = hit.referrer {
        body["referrer"] = json!(r);
    }
    if let Some(cents) = hit.revenue_cents {
        body["revenue"] =
            json!({"currency": "EUR", "amount": format!("{}.{:02}", cents / 100, cents % 100)});
    }
    Prepared {
        path: "/api/event".into(),
        headers: vec![
            ("user-agent", hit.user_agent().to_string()),
            ("x-forwarded-for", hit.ip().to_string()),
            ("content-type", "application/json".into()),
        ],
        body: Bytes::from(body.to_string()),
        events: 1,
    }
}

/// One GA4 Measurement Protocol request (`POST /mp/collect`) carrying `hits` (at most 25,
/// GA4's limit per request) as one client's events; the client id is the first hit's
/// visitor.
pub fn measurement_protocol(site: &SiteInfo, hits: &[Hit]) -> Prepared {
    let visitor = hits.first().map_or(1, |h| h.visitor);
    let events: Vec<_> = hits
        .iter()
        .map(|h| {
            let mut params = json!({
                "page_location": format!("https://{}{}", site.domain, h.path),
                "engagement_time_msec": 100,
            });
            if let Some(r) = h.referrer {
                params["page_referrer"] = json!(r);
            }
            if let Some(cents) = h.revenue_cents {
                params["value"] = json!(cents as f64 / 100.0);
                params["currency"] = json!("EUR");
            }
            let name = if h.name == "pageview" {
                "page_view"
            } else {
                "sign_up"
            };
            json!({"name": name, "params": params})
        })
        .collect();
    let body = json!({"client_id": format!("{}.{}", visitor % 1_000_000_000, visitor >> 40), "events": events});
    Prepared {
        path: format!(
            "/mp/collect?measurement_id={}&api_secret={}",
            site.measurement_id, site.api_secret
        ),
        headers: vec![("content-type", "application/json".into())],
        body: Bytes::from(body.to_string()),
        events: hits.len() as u64,
    }
}

/// Sends `req` to `base` (`http://host:port`); returns the status, or an error when no
/// answer came.
///
/// # Errors
/// Connection and protocol errors, as text.
pub async fn send(client: &HttpClient, base: &str, req: &Prepared) -> Result<u16, String> {
    let mut builder = hyper::Request::post(format!("{base}{}", req.path));
    for (k, v) in &req.headers {
        builder = builder.header(*k, v);
    }
    let request = builder
        .body(Full::new(req.body.clone()))
        .map_err(|e| e.to_string())?;
    let response = client.request(request).await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    // Read the whole answer so the connection goes back to the pool.
    response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok(status)
}

/// POSTs a JSON body with a bearer key and returns the status and the parsed answer.
///
/// # Errors
/// Connection errors and answers that are not JSON, as text.
pub async fn post_json(
    client: &HttpClient,
    url: &str,
    key: &str,
    body: &serde_json::Value,
) -> Result<(u16, serde_json::Value), String> {
    let request = hyper::Request::post(url)
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .map_err(|e| e.to_string())?;
    let response = client.request(request).await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    let value = serde_json::from_slice(&bytes).map_err(|e| format!("status {status}: {e}"))?;
    Ok((status, value))
}
