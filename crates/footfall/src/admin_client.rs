//! The CLI's client of the admin API: over the running server's Unix socket, or — when no
//! server is running — in-process over the data directory, through the very same router.

use std::sync::Arc;

use anyhow::{anyhow, Context};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tower::ServiceExt;

use crate::config::Config;
use crate::serve::{app_state, open_backends, Backends};

/// The running server's admin socket could not be reached, or the server went away before it
/// answered (it is stopping or restarting). A request that failed this way may be sent again
/// once the server is back; every admin write is idempotent or checked by the server.
#[derive(Debug)]
pub struct ServerUnreachable {
    /// The socket's path.
    pub socket: std::path::PathBuf,
}

impl std::fmt::Display for ServerUnreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the footfall server's admin socket {} cannot be reached",
            self.socket.display()
        )
    }
}

impl std::error::Error for ServerUnreachable {}

/// The server answered `503` (its log or store is unavailable for now) or `429`: the same
/// request may succeed later.
#[derive(Debug)]
pub struct ServerBusy {
    /// The status answered.
    pub status: StatusCode,
    /// The API's message.
    pub message: String,
}

impl std::fmt::Display for ServerBusy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.status)
    }
}

impl std::error::Error for ServerBusy {}

/// The error for a non-2xx answer: [`ServerBusy`] for `503` and `429`, else the API's message.
pub(crate) fn status_error(status: StatusCode, answer: &Value) -> anyhow::Error {
    let message = answer.get("error").and_then(Value::as_str).map_or_else(
        || format!("the admin API answered {status}"),
        str::to_string,
    );
    if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS {
        anyhow::Error::new(ServerBusy { status, message })
    } else {
        anyhow!("{message}")
    }
}

/// Where admin requests go.
pub enum AdminClient {
    /// A running server's socket.
    Socket(std::path::PathBuf),
    /// In-process over the opened data directory.
    Local {
        /// The admin router.
        router: axum::Router,
        /// Kept open while the client lives.
        backends: Backends,
    },
}

impl AdminClient {
    /// Connects to the running server if there is one, else opens the data directory.
    ///
    /// # Errors
    /// When neither works (for example, the data directory is locked by a server whose
    /// socket is unreachable).
    pub async fn connect(config: &Config) -> anyhow::Result<AdminClient> {
        let socket = config.admin_socket();
        if tokio::net::UnixStream::connect(&socket).await.is_ok() {
            return Ok(AdminClient::Socket(socket));
        }
        std::fs::create_dir_all(&config.data_dir).with_context(|| {
            format!("creating the data directory {}", config.data_dir.display())
        })?;
        let backends = open_backends(config).await.context(
            "no footfall server is running here, and the data directory cannot be opened directly",
        )?;
        let state = app_state(
            config,
            &backends,
            Arc::new(footfall_model::clock::SystemClock),
        )
        .await?;
        Ok(AdminClient::Local {
            router: footfall_web::admin::router(state),
            backends,
        })
    }

    /// Whether requests go to a running server.
    pub fn is_remote(&self) -> bool {
        matches!(self, AdminClient::Socket(_))
    }

    /// Closes the in-process backends (flushes the embedded log).
    pub fn close(self) {
        if let AdminClient::Local { backends, .. } = self {
            if let Some(log) = backends.embedded_log {
                log.close();
            }
        }
    }

    /// Sends a request; returns the status and the JSON body (`null` when empty).
    ///
    /// # Errors
    /// When the server cannot be reached or answers something that is not JSON.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let bytes = body
            .map(serde_json::to_vec)
            .transpose()?
            .unwrap_or_default();
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost")
            .header("content-type", "application/json")
            .body(Body::from(bytes))?;
        let (status, body) = match self {
            AdminClient::Local { router, .. } => {
                let response = router
                    .clone()
                    .oneshot(request)
                    .await
                    .map_err(|e| anyhow!("admin request failed: {e}"))?;
                let status = response.status();
                (status, response.into_body().collect().await?.to_bytes())
            }
            AdminClient::Socket(path) => {
                let unreachable = || ServerUnreachable {
                    socket: path.clone(),
                };
                let stream = tokio::net::UnixStream::connect(path)
                    .await
                    .context(unreachable())?;
                let (mut sender, connection) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream))
                        .await
                        .context(unreachable())?;
                tokio::spawn(connection);
                let response = sender
                    .send_request(request)
                    .await
                    .context("the server closed the admin connection")
                    .context(unreachable())?;
                let status = response.status();
                let body = response
                    .into_body()
                    .collect()
                    .await
                    .context(unreachable())?
                    .to_bytes();
                (status, body)
            }
        };
        let value = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body).with_context(|| {
                format!("the admin API answered {status} with a body that is not JSON")
            })?
        };
        Ok((status, value))
    }

    /// Like [`AdminClient::request`], but an error status becomes an error carrying the
    /// API's message.
    ///
    /// # Errors
    /// As [`AdminClient::request`], and for any non-2xx status ([`ServerBusy`] for `503` and
    /// `429`).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let (status, value) = self.request(method, path, body).await?;
        if status.is_success() {
            Ok(value)
        } else {
            Err(status_error(status, &value))
        }
    }
}
