//! The baseline: a bare hyper server that reads each request's whole body and answers the
//! status Footfall's collector answers on success (`202` for `/api/event`, `204` for
//! `/mp/collect`, `200` otherwise), and does nothing else. The benchmark runs it on the same
//! core and under the same load as `footfall serve --roles collector`, so the collector's
//! cost is a ratio of CPU time per event measured side by side (DESIGN §5).

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

async fn answer(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let status = match req.uri().path() {
        "/api/event" => StatusCode::ACCEPTED,
        "/mp/collect" => StatusCode::NO_CONTENT,
        _ => StatusCode::OK,
    };
    // Read the body as the collector must, then drop it.
    let _body = req.into_body().collect().await?.to_bytes();
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    Ok(response)
}

/// Serves on `listen` until the process is stopped; prints `baseline listening on ADDR`
/// to stderr once bound.
///
/// # Errors
/// When the address cannot be bound.
pub async fn serve(listen: &str) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr: SocketAddr = listener.local_addr()?;
    eprintln!("baseline listening on http://{addr}");
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), hyper::service::service_fn(answer))
                .await;
        });
    }
}
