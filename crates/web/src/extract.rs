//! Extractors: who is calling (session cookie with CSRF check, or bearer token), what they
//! may do (`Need<P>` names the permission in the handler's signature), and request parts
//! whose rejections are problem+json like every other error.

use std::{marker::PhantomData, net::SocketAddr};

use axum::{
    extract::{ConnectInfo, FromRequest, FromRequestParts, Request},
    http::{Method, StatusCode, header, request::Parts},
};
use cardcrm_service::{Access, Identity, identity::Required, ledger::IdempotencyKey};
use serde::de::DeserializeOwned;

use crate::{
    AppState,
    problem::{ApiError, Problem},
};

pub const SESSION_COOKIE: &str = "cardcrm_session";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The request id (from `X-Request-Id` when sane, else generated), set by middleware.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// The caller's address.
pub fn client_ip(parts: &Parts) -> Option<String> {
    parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip().to_string())
}

pub fn request_id(parts: &Parts) -> Option<String> {
    parts.extensions.get::<RequestId>().map(|id| id.0.clone())
}

/// The session token from the `Cookie` header.
pub fn session_cookie(parts: &Parts) -> Option<String> {
    parts.headers.get_all(header::COOKIE).iter().filter_map(|value| value.to_str().ok()).find_map(|cookies| {
        cookies.split(';').find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == SESSION_COOKIE).then(|| value.to_owned())
        })
    })
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0_u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub identity: Identity,
    /// The session token when the caller came with a cookie (for logout).
    pub session_token: Option<String>,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        if let Some(caller) = parts.extensions.get::<Caller>() {
            return Ok(caller.clone());
        }
        let ip = client_ip(parts);
        let request_id = request_id(parts);
        let bearer = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")))
            .map(|token| token.trim().to_owned());
        let caller = if let Some(token) = bearer {
            let identity = state.services.authenticate_token(&token).await?;
            Caller { identity, session_token: None }
        } else if let Some(token) = session_cookie(parts) {
            let session = state.services.authenticate_session(&token).await?;
            let unsafe_method = !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
            if unsafe_method {
                let sent = parts.headers.get(CSRF_HEADER).map(|value| value.as_bytes()).unwrap_or_default();
                if !constant_time_eq(sent, session.csrf_token.as_bytes()) {
                    return Err(Problem::new(
                        StatusCode::FORBIDDEN,
                        "auth.csrf",
                        "a state-changing request with a session cookie must carry the X-CSRF-Token header from login",
                    )
                    .into());
                }
            }
            Caller { identity: session.identity, session_token: Some(token) }
        } else {
            return Err(Problem::new(
                StatusCode::UNAUTHORIZED,
                "auth.required",
                "sign in (session cookie) or send an API token as Authorization: Bearer <token>",
            )
            .into());
        };
        let mut caller = caller;
        caller.identity = caller.identity.with_origin(ip, request_id);
        let key = format!("{}:{}", caller.identity.kind.as_str(), caller.identity.id.unwrap_or(0));
        state.limiter.check(&key)?;
        parts.extensions.insert(caller.clone());
        Ok(caller)
    }
}

/// An authenticated caller holding permission `P`; a handler taking `Need<P>` states in its
/// signature what it requires.
#[derive(Debug)]
pub struct Need<P> {
    pub caller: Caller,
    permission: PhantomData<P>,
}

impl<P: Required> Need<P> {
    pub fn access(&self) -> Access<'_, P> {
        self.caller.identity.grant::<P>().expect("the permission was checked when the request was extracted")
    }

    pub fn identity(&self) -> &Identity {
        &self.caller.identity
    }
}

impl<P: Required + Send> FromRequestParts<AppState> for Need<P> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let caller = Caller::from_request_parts(parts, state).await?;
        caller.identity.grant::<P>()?;
        Ok(Self { caller, permission: PhantomData })
    }
}

/// A JSON body whose problems name the offending field: malformed JSON, wrong types,
/// unknown or duplicate fields, wrong content type, a body over the limit.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type_ok = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("application/json") || value.contains("+json"));
        if !content_type_ok {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "request.content_type",
                "send the body as application/json",
            )
            .into());
        }
        let bytes = axum::body::Bytes::from_request(request, state).await.map_err(|rejection| {
            let status = rejection.status();
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                Problem::new(status, "request.too_large", "the request body is larger than the limit")
            } else {
                Problem::new(
                    StatusCode::BAD_REQUEST,
                    "request.unreadable",
                    format!("the request body cannot be read: {rejection}"),
                )
            }
        })?;
        // Every body of this API is an object. serde would also read a struct from an array
        // of its fields in order, so `[null, null]` could clear the first two fields.
        if bytes.iter().find(|byte| !byte.is_ascii_whitespace()).is_some_and(|first| *first != b'{') {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "request.invalid_type",
                "the body must be a JSON object",
            )
            .into());
        }
        parse_json(&bytes).map(ApiJson)
    }
}

/// Parses JSON with the path of the offending field in errors.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.inner();
        let message = inner.to_string();
        let (code, status) = match inner.classify() {
            serde_json::error::Category::Syntax
            | serde_json::error::Category::Eof
            | serde_json::error::Category::Io => ("request.malformed_json", StatusCode::BAD_REQUEST),
            serde_json::error::Category::Data if message.starts_with("unknown field") => {
                ("request.unknown_field", StatusCode::BAD_REQUEST)
            }
            serde_json::error::Category::Data if message.starts_with("duplicate field") => {
                ("request.duplicate_field", StatusCode::BAD_REQUEST)
            }
            serde_json::error::Category::Data if message.starts_with("missing field") => {
                ("request.missing_field", StatusCode::BAD_REQUEST)
            }
            serde_json::error::Category::Data => ("request.invalid_type", StatusCode::BAD_REQUEST),
        };
        let field = field_of(&path, &message);
        let detail = if field.is_empty() { message } else { format!("{field}: {message}") };
        let mut problem = Problem::new(status, code, detail);
        if !field.is_empty() {
            problem.field = Some(field);
        }
        ApiError::from(problem)
    })?;
    deserializer.end().map_err(|_| {
        ApiError::from(Problem::new(
            StatusCode::BAD_REQUEST,
            "request.malformed_json",
            "trailing characters after the JSON value",
        ))
    })?;
    Ok(value)
}

/// The field a serde error is about: its path, or for unknown/missing fields the name in
/// backticks (which serde reports at the parent's path).
fn field_of(path: &str, message: &str) -> String {
    let named = if message.starts_with("unknown field")
        || message.starts_with("missing field")
        || message.starts_with("duplicate field")
    {
        message.split('`').nth(1).map(str::to_owned)
    } else {
        None
    };
    let base = if path == "." || path == "?" { String::new() } else { path.to_owned() };
    match named {
        Some(name) if base.is_empty() => name,
        Some(name) if base == name || base.ends_with(&format!(".{name}")) => base,
        Some(name) => format!("{base}.{name}"),
        None => base,
    }
}

/// Query parameters with problem+json rejections.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parse_query(parts.uri.query().unwrap_or_default()).map(ApiQuery)
    }
}

fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let deserializer = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let path = error.path().to_string();
        let message = error.inner().to_string();
        let field = field_of(&path, &message);
        let detail = if field.is_empty() { message } else { format!("{field}: {message}") };
        let mut problem = Problem::new(StatusCode::BAD_REQUEST, "request.invalid_query", detail);
        problem.field = (!field.is_empty()).then_some(field);
        ApiError::from(problem)
    })
}

/// Path parameters with problem+json rejections.
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state).await.map(|path| ApiPath(path.0)).map_err(
            |rejection| {
                ApiError::from(Problem::new(
                    StatusCode::BAD_REQUEST,
                    "request.invalid_path",
                    rejection.body_text(),
                ))
            },
        )
    }
}

/// Where a request comes from: address and user agent.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for ClientInfo {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self {
            ip: client_ip(parts),
            user_agent: parts
                .headers
                .get(header::USER_AGENT)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned),
        })
    }
}

pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

/// The `Idempotency-Key` header that every request moving value must carry.
#[derive(Debug)]
pub struct Idempotency(pub IdempotencyKey);

impl<S: Send + Sync> FromRequestParts<S> for Idempotency {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get(IDEMPOTENCY_HEADER) else {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "idempotency_key.required",
                "this request moves value and needs an Idempotency-Key header (a UUID is a good choice)",
            )
            .with_field("Idempotency-Key")
            .into());
        };
        let text = value.to_str().unwrap_or("\u{fffd}");
        IdempotencyKey::parse(text)
            .map(Idempotency)
            .map_err(|error| ApiError::from(cardcrm_service::ServiceError::from(error.at("Idempotency-Key"))))
    }
}
