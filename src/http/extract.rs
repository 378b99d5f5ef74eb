//! Request extractors whose rejections use the API's error shape: JSON bodies
//! (naming the field that failed), the API key, and query strings.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// A JSON body; a bad one is a 400 naming the field, an oversized one a 413. A field
/// that is a number with no fraction is an integer however it is written (`60.0`,
/// `6e1`), as JSON Schema's `integer` has it: clients that keep every number as a
/// float are understood.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let value = match axum::Json::<serde_json::Value>::from_request(request, state).await {
            Ok(axum::Json(value)) => value,
            Err(rejection) => return Err(json_error(rejection)),
        };
        parse_body(value).map(ApiJson)
    }
}

/// A request body read into `T`: a JSON object (serde would also read a struct from
/// an array of its fields, which no client means), integral top-level numbers taken
/// as integers, and an error that names the field.
pub fn parse_body<T: DeserializeOwned>(mut value: serde_json::Value) -> Result<T, ApiError> {
    let Some(fields) = value.as_object_mut() else {
        return Err(ApiError::bad_request("invalid body: it must be a JSON object"));
    };
    // Only the request's own fields: a job's data is the template's, as it was sent.
    fields.values_mut().for_each(integral_float_as_integer);
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        let reason = err.into_inner();
        if path == "." {
            ApiError::bad_request(format!("invalid body: {reason}"))
        } else {
            ApiError::bad_request(format!("invalid body: {path}: {reason}"))
        }
    })
}

/// `value` as an integer if it is a number with no fraction that fits in one.
fn integral_float_as_integer(value: &mut serde_json::Value) {
    if let serde_json::Value::Number(number) = value
        && let Some(float) = number.as_f64().filter(|_| number.is_f64())
        // i64's range as floats: [-2^63, 2^63).
        && float.fract() == 0.0
        && (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&float)
    {
        *number = serde_json::Number::from(float as i64);
    }
}

fn json_error(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            "send the body as JSON with Content-Type: application/json",
        ),
        JsonRejection::BytesRejection(_) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE", "the request body is too large")
        }
        JsonRejection::JsonDataError(err) => {
            // axum's text is "Failed to deserialize the JSON body into the target type: <path>: <reason>".
            let text = err.body_text();
            let detail = text.split_once("target type: ").map_or(text.as_str(), |(_, d)| d);
            ApiError::bad_request(format!("invalid body: {detail}"))
        }
        JsonRejection::JsonSyntaxError(err) => {
            let text = err.body_text();
            let detail = text.split_once("JSON: ").map_or(text.as_str(), |(_, d)| d);
            ApiError::bad_request(format!("the body is not valid JSON: {detail}"))
        }
        other => ApiError::bad_request(other.body_text()),
    }
}

/// Query parameters; unknown values are a 400 naming the parameter.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(ApiQuery(value)),
            Err(rejection) => Err(query_error(rejection)),
        }
    }
}

fn query_error(rejection: QueryRejection) -> ApiError {
    let text = rejection.body_text();
    let detail = text.split_once("query string: ").map_or(text.as_str(), |(_, d)| d);
    ApiError::bad_request(format!("invalid query parameter: {detail}"))
}

/// The bearer token of the request, if it has one.
pub fn bearer_token(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token.trim()).filter(|t| !t.is_empty())
}
