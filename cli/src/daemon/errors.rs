//! Errors of the admin API: every failure, the engine's or the request's own, leaves as one JSON
//! body `{"error": {"code", "message"}}` with an HTTP status chosen from the engine's
//! [`ErrorCode`]. The extractors here replace axum's plain-text rejections so that even a bad
//! query string or an oversized body answers in that shape.

use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use mgha_core::ErrorCode;
use serde::de::DeserializeOwned;

use crate::api::{ErrorBody, ErrorDetail};

/// An error answer of the admin API.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
}

/// The HTTP status for an engine error code.
pub fn status_for(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::InvalidArgument => StatusCode::BAD_REQUEST,
        ErrorCode::Validation => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::Conflict => StatusCode::CONFLICT,
        // A standby cannot publish now but the active node can: the same answer a load balancer
        // takes as "try another server".
        ErrorCode::ReadOnly => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::Busy => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Corrupt | ErrorCode::Io => StatusCode::INTERNAL_SERVER_ERROR,
        // A peer failed or did not acknowledge in time: the fault is upstream of this node.
        ErrorCode::Peer => StatusCode::BAD_GATEWAY,
    }
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError { status: status_for(code), code: code.as_str().into(), message: message.into() }
    }

    pub fn unauthorized(message: &str) -> ApiError {
        ApiError { status: StatusCode::UNAUTHORIZED, code: "unauthorized".into(), message: message.into() }
    }

    /// A failure of the daemon itself (a panicked or cancelled task), not of the request.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::Io, message)
    }
}

impl From<mgha_core::Error> for ApiError {
    fn from(e: mgha_core::Error) -> Self {
        ApiError::new(e.code(), e.to_string())
    }
}

impl From<mgha_node::Error> for ApiError {
    fn from(e: mgha_node::Error) -> Self {
        ApiError::new(e.code(), e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { error: ErrorDetail { code: self.code, message: self.message } };
        let mut resp = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(axum::http::header::WWW_AUTHENTICATE, axum::http::HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

fn body_rejection(r: BytesRejection) -> ApiError {
    if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            ErrorCode::TooLarge,
            format!("request body is over the limit of {} bytes", mgha_core::limits::CHANGESET_BYTES_MAX),
        )
    } else {
        ApiError::new(ErrorCode::InvalidArgument, format!("request body: {}", r.body_text()))
    }
}

/// The raw request body, with the API's error shape for an oversized or broken body.
#[derive(Debug)]
pub struct RawBody(pub axum::body::Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        axum::body::Bytes::from_request(req, state).await.map(RawBody).map_err(body_rejection)
    }
}

/// A JSON request body; a malformed one is an `invalid-argument` error naming line and column.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let RawBody(bytes) = RawBody::from_request(req, state).await?;
        serde_json::from_slice(&bytes)
            .map(ApiJson)
            .map_err(|e| ApiError::new(ErrorCode::InvalidArgument, format!("request body: {e}")))
    }
}

/// Query parameters, with the API's error shape.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|r: QueryRejection| ApiError::new(ErrorCode::InvalidArgument, r.body_text()))
    }
}

/// Path parameters, with the API's error shape.
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|r: PathRejection| ApiError::new(ErrorCode::InvalidArgument, r.body_text()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_the_documented_statuses() {
        let cases = [
            (ErrorCode::Validation, 422),
            (ErrorCode::NotFound, 404),
            (ErrorCode::Conflict, 409),
            (ErrorCode::ReadOnly, 503),
            (ErrorCode::TooLarge, 413),
            (ErrorCode::InvalidArgument, 400),
            (ErrorCode::Busy, 503),
            (ErrorCode::Corrupt, 500),
            (ErrorCode::Io, 500),
            (ErrorCode::Peer, 502),
        ];
        for (code, status) in cases {
            assert_eq!(status_for(code).as_u16(), status, "{code:?}");
        }
    }

    #[test]
    fn engine_errors_keep_their_code_and_message() {
        let e = ApiError::from(mgha_core::Error::DanglingReference {
            type_name: "group".into(),
            name: "web".into(),
            field: "members".into(),
            reference: "web9".into(),
        });
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(e.code, "validation");
        assert!(e.message.contains("web9"), "{}", e.message);
    }
}
