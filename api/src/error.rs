use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::json;
use thiserror::Error;

/// Errors a request can end in; each maps to one status code. A refusal (4xx) names what it
/// refuses in its message's first word and in the body's `field` ([`ApiError::field`]).
#[derive(Debug, Error)]
pub enum ApiError {
    /// 400: a field breaks a rule.
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    /// 413: the body is over the limit.
    #[error("body: larger than {limit} bytes")]
    TooLarge { limit: usize },
    /// 415: the body is not JSON.
    #[error("content-type: must be application/json")]
    NotJson,
    /// 401 with `WWW-Authenticate: Bearer`: no bearer token, or a header that is not one.
    #[error("authorization: {0}")]
    Unauthenticated(String),
    /// 403: a bearer token that is not the route's, or routes disabled for want of a token.
    #[error("authorization: {0}")]
    Forbidden(String),
    /// 404: no such product.
    #[error("id: product {0} not found")]
    NotFound(String),
    /// 404: no such route.
    #[error("path: no such route")]
    NoRoute,
    /// 405: the route exists, not with this method (the answer's `Allow` lists those it takes).
    #[error("method: not allowed on this route; see Allow")]
    MethodNotAllowed,
    /// 408: the request was not answered within `REQUEST_TIMEOUT`.
    #[error("request: not answered within {0:?}")]
    TimedOut(std::time::Duration),
    /// 503 with Retry-After: the queue is full and the policy refuses writes.
    #[error("write queue is full ({capacity} dirty keys); retry later")]
    QueueFull { capacity: u64, retry_after_secs: u64 },
    /// 503: Redis or PostgreSQL cannot be reached; details are logged, not returned.
    #[error("{0} is unavailable; retry later")]
    Unavailable(&'static str),
    /// 500: a fault of ours; details are logged, not returned.
    #[error("internal error")]
    Internal(String),
}

/// Result alias of the API crate.
pub type Result<T, E = ApiError> = std::result::Result<T, E>;

impl From<wbc_core::Error> for ApiError {
    fn from(e: wbc_core::Error) -> Self {
        use wbc_core::Error as E;
        match e {
            E::Invalid { field, reason } => Self::Invalid { field, reason },
            E::QueueFull { capacity } => Self::QueueFull { capacity, retry_after_secs: 1 },
            E::Redis(e) => {
                tracing::error!(error = %e, "redis request failed");
                Self::Unavailable("redis")
            }
            E::Database(e) => {
                tracing::error!(error = %e, "postgres request failed");
                Self::Unavailable("postgres")
            }
            other => Self::Internal(other.to_string()),
        }
    }
}

impl ApiError {
    /// The rejection reason label of `wbc_writes_rejected_total`.
    pub fn reject_reason(&self) -> &'static str {
        match self {
            Self::Invalid { .. } | Self::TooLarge { .. } | Self::NotJson => "validation",
            Self::QueueFull { .. } => "overflow",
            Self::Unavailable("redis") => "redis_down",
            Self::Unavailable(_) => "postgres_down",
            Self::NotFound(_)
            | Self::NoRoute
            | Self::MethodNotAllowed
            | Self::TimedOut(_)
            | Self::Internal(_)
            | Self::Unauthenticated(_)
            | Self::Forbidden(_) => "other",
        }
    }

    /// What a refusal refuses: a field of the body, `id`, `body`, …; none for a 5xx.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Invalid { field, .. } => Some(field),
            Self::TooLarge { .. } => Some("body"),
            Self::NotJson => Some("content-type"),
            Self::NotFound(_) => Some("id"),
            Self::NoRoute => Some("path"),
            Self::MethodNotAllowed => Some("method"),
            Self::TimedOut(_) => Some("request"),
            Self::Unauthenticated(_) | Self::Forbidden(_) => Some("authorization"),
            Self::QueueFull { .. } | Self::Unavailable(_) | Self::Internal(_) => None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::Invalid { .. } => StatusCode::BAD_REQUEST,
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::NotJson => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) | Self::NoRoute => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::TimedOut(_) => StatusCode::REQUEST_TIMEOUT,
            Self::QueueFull { .. } | Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        let mut body = json!({ "error": self.to_string() });
        if let Some(field) = self.field() {
            body["field"] = json!(field);
        }
        let mut response = (status, Json(body)).into_response();
        match self {
            Self::QueueFull { retry_after_secs, .. } => {
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            }
            Self::Unauthenticated(_) => {
                response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        response
    }
}
