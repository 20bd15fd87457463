//! Liveness and readiness.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, json};

use crate::http::AppState;
use crate::problem::problem;

/// How long a backend may take to answer a readiness ping.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /healthz`: 200 while the process serves.
pub async fn get_healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /metrics`: Prometheus text format.
pub async fn get_metrics() -> Response {
    let mut response = crate::observability::prometheus().render().into_response();
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// `GET /readyz`: 200 only when every configured backend answers, else 503
/// naming the failing one.
pub async fn get_readyz(State(state): State<AppState>) -> Response {
    let users = tokio::time::timeout(PING_TIMEOUT, state.user_store.ping());
    let tokens = tokio::time::timeout(PING_TIMEOUT, state.token_store.ping());
    let (users, tokens) = tokio::join!(users, tokens);
    let mut backends = Map::new();
    let mut failing = Vec::new();
    for (name, result) in [
        (state.user_store.backend_name(), users),
        (state.token_store.backend_name(), tokens),
    ] {
        let ok = matches!(result, Ok(Ok(())));
        // One backend may serve both stores; it is failing if either ping failed.
        let entry = backends.entry(name).or_insert(json!("ok"));
        if !ok {
            *entry = json!("unavailable");
            if !failing.contains(&name) {
                failing.push(name);
            }
        }
    }
    if failing.is_empty() {
        return Json(json!({"status": "ready", "backends": backends})).into_response();
    }
    let detail = format!("not answering: {}", failing.join(", "));
    let mut response = problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "backend_unavailable",
        &detail,
        None,
    );
    // Re-render with the per-backend states, which callers and probes read.
    let body = json!({
        "type": "about:blank",
        "title": "Service Unavailable",
        "status": 503,
        "detail": detail,
        "code": "backend_unavailable",
        "backends": backends,
    });
    *response.body_mut() = axum::body::Body::from(body.to_string());
    response
}
