//! The admin listener: `/metrics`, `/healthz`, `/readyz` (and `POST /reload`).

pub mod metrics;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use metrics::Metrics;

/// What the process still waits for before it may take traffic (empty when ready).
pub type ReadinessProbe = Arc<dyn Fn() -> Vec<String> + Send + Sync>;

/// Reloads the configuration; `Err` carries the reason the new one was refused.
#[async_trait::async_trait]
pub trait Reload: Send + Sync {
    async fn reload(&self) -> crate::error::Result<String>;
}

#[derive(Clone)]
pub struct AdminState {
    pub metrics: Arc<Metrics>,
    pub readiness: ReadinessProbe,
    pub reload: Option<Arc<dyn Reload>>,
}

pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { (StatusCode::OK, "ok\n") }))
        .route("/readyz", get(readyz))
        .route("/reload", post(reload))
        .with_state(state)
}

async fn metrics(State(state): State<AdminState>) -> Response {
    ([("content-type", "text/plain; version=0.0.4; charset=utf-8")], state.metrics.render()).into_response()
}

async fn readyz(State(state): State<AdminState>) -> Response {
    let waiting = (state.readiness)();
    if waiting.is_empty() {
        (StatusCode::OK, axum::Json(json!({"ready": true}))).into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, axum::Json(json!({"ready": false, "waiting_for": waiting}))).into_response()
    }
}

/// `POST /reload`: reread the config file; a refused config leaves the running one in place.
async fn reload(State(state): State<AdminState>) -> Response {
    let Some(reload) = state.reload.clone() else {
        return (
            StatusCode::NOT_IMPLEMENTED,
            axum::Json(json!({"reloaded": false, "error": "reload is not available"})),
        )
            .into_response();
    };
    match reload.reload().await {
        Ok(summary) => (StatusCode::OK, axum::Json(json!({"reloaded": true, "summary": summary}))).into_response(),
        Err(reason) => {
            (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(json!({"reloaded": false, "error": reason.chain()})))
                .into_response()
        }
    }
}
