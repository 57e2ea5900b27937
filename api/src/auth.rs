//! Bearer tokens: `/admin/*` answers only requests that send ADMIN_TOKEN, and the product routes
//! only those that send PRODUCTS_TOKEN when one is set. One layer on each router checks the
//! `Authorization` header before any handler runs; every refusal is counted.
use std::{
    fmt,
    path::{Path, PathBuf},
    sync::Arc,
};

use axum::{
    Router,
    extract::{Request, State},
    http::{HeaderMap, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
};
use clap::Args;
use prometheus::IntCounterVec;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use wbc_core::{
    Error,
    secret::{self, Secret},
};

use crate::{ApiError, AppState};

/// Fewest characters a token may have: 16 random characters are beyond guessing.
pub const MIN_TOKEN_CHARS: usize = 16;

/// The tokens, each from its variable or from a file (`X_FILE`, a mounted Secret).
#[derive(Args, Clone, Debug, Default)]
pub struct AuthArgs {
    /// Bearer token that every /admin/* request must send (`Authorization: Bearer …`): at least 16
    /// printable ASCII characters. Without one, the admin endpoints refuse every request.
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<Secret>,
    /// A file holding ADMIN_TOKEN, such as a mounted Secret.
    #[arg(long, env = "ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// Bearer token that product reads and writes must send, as ADMIN_TOKEN. Without one they are open.
    #[arg(long, env = "PRODUCTS_TOKEN", hide_env_values = true)]
    pub products_token: Option<Secret>,
    /// A file holding PRODUCTS_TOKEN, such as a mounted Secret.
    #[arg(long, env = "PRODUCTS_TOKEN_FILE")]
    pub products_token_file: Option<PathBuf>,
}

impl AuthArgs {
    /// Resolves and checks both tokens; a bad one is refused by its variable's name.
    pub fn access(&self) -> wbc_core::Result<Access> {
        Ok(Access {
            admin: token(Scope::Admin, self.admin_token.as_ref(), self.admin_token_file.as_deref())?,
            products: token(Scope::Products, self.products_token.as_ref(), self.products_token_file.as_deref())?,
        })
    }
}

/// The token of `scope` from its variable or its file, checked; a refusal names the file it came from.
fn token(scope: Scope, value: Option<&Secret>, file: Option<&Path>) -> wbc_core::Result<Option<Token>> {
    let variable = scope.variable();
    let Some(secret) = secret::resolve(variable, value.map(Secret::expose), file)? else { return Ok(None) };
    Token::new(variable, secret.expose()).map(Some).map_err(|e| match (e, file) {
        (Error::Config { setting, field, reason }, Some(path)) => {
            Error::Config { setting, field, reason: format!("{reason} (read from {variable}_FILE {})", path.display()) }
        }
        (e, _) => e,
    })
}

/// Who may call what: the admin token (none: the admin endpoints are disabled) and the products
/// token (none: the product routes are open).
#[derive(Clone, Debug, Default)]
pub struct Access {
    pub admin: Option<Token>,
    pub products: Option<Token>,
}

impl Access {
    /// Checks the tokens given, as the variables ADMIN_TOKEN and PRODUCTS_TOKEN hold them.
    pub fn new(admin: Option<&str>, products: Option<&str>) -> wbc_core::Result<Self> {
        Ok(Self {
            admin: admin.map(|t| Token::new(Scope::Admin.variable(), t)).transpose()?,
            products: products.map(|t| Token::new(Scope::Products.variable(), t)).transpose()?,
        })
    }

    /// `/admin/*` behind the admin token; without one, every request is refused.
    pub(crate) fn guard_admin(&self, router: Router<AppState>, failures: &IntCounterVec) -> Router<AppState> {
        guard(router, Scope::Admin, self.admin.clone(), failures)
    }

    /// The product routes behind the products token; without one they stay as they are, with no
    /// layer to pass through.
    pub(crate) fn guard_products(&self, router: Router<AppState>, failures: &IntCounterVec) -> Router<AppState> {
        match &self.products {
            Some(token) => guard(router, Scope::Products, Some(token.clone()), failures),
            None => router,
        }
    }
}

/// A checked token, kept only as its SHA-256 digest: a presented token is hashed too and the two
/// digests compared in constant time, so neither its bytes nor its length show in the timing.
#[derive(Clone)]
pub struct Token([u8; 32]);

impl Token {
    /// Refuses, naming `variable`, a token that is blank, that cannot go into an HTTP header as it
    /// is, or that is shorter than [`MIN_TOKEN_CHARS`].
    pub fn new(variable: &'static str, token: &str) -> wbc_core::Result<Self> {
        let refuse = |reason: String| Error::Config { setting: variable, field: None, reason };
        if token.trim().is_empty() {
            return Err(refuse("empty or blank".into()));
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(refuse("must be printable ASCII without spaces, as it is sent in an HTTP header".into()));
        }
        if token.len() < MIN_TOKEN_CHARS {
            return Err(refuse(format!(
                "has {} characters, fewer than {MIN_TOKEN_CHARS}; make one with `openssl rand -hex 32`",
                token.len()
            )));
        }
        Ok(Self(Sha256::digest(token.as_bytes()).into()))
    }

    fn matches(&self, presented: &[u8]) -> bool {
        Sha256::digest(presented).as_slice().ct_eq(&self.0).into()
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(***)")
    }
}

/// What a token protects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Admin,
    Products,
}

impl Scope {
    /// The `scope` label of `wbc_api_auth_failures_total`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Products => "products",
        }
    }

    fn variable(self) -> &'static str {
        match self {
            Self::Admin => "ADMIN_TOKEN",
            Self::Products => "PRODUCTS_TOKEN",
        }
    }

    fn routes(self) -> &'static str {
        match self {
            Self::Admin => "/admin/*",
            Self::Products => "/products",
        }
    }
}

/// Why a request was refused: the `reason` label of `wbc_api_auth_failures_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// 401: no `Authorization` header.
    Missing,
    /// 401: an `Authorization` header that is not `Bearer <token>`.
    Malformed,
    /// 403: a bearer token that is not the scope's.
    Wrong,
    /// 403: the admin endpoints without an admin token configured.
    Disabled,
}

impl Refusal {
    /// Every reason, for series that exist from the start.
    pub const ALL: [Self; 4] = [Self::Missing, Self::Malformed, Self::Wrong, Self::Disabled];

    pub fn label(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Malformed => "malformed",
            Self::Wrong => "wrong",
            Self::Disabled => "disabled",
        }
    }

    fn error(self, scope: Scope) -> ApiError {
        let (routes, variable) = (scope.routes(), scope.variable());
        let needs = format!("{routes} needs the header `Authorization: Bearer <{variable}>`");
        match self {
            Self::Missing => ApiError::Unauthenticated(format!("missing; {needs}")),
            Self::Malformed => ApiError::Unauthenticated(format!("not a bearer token; {needs}")),
            Self::Wrong => ApiError::Forbidden(format!("the bearer token is not {variable}")),
            Self::Disabled => {
                ApiError::Forbidden(format!("{routes} is disabled: no {variable} (or {variable}_FILE) is configured"))
            }
        }
    }
}

/// The state of one scope's layer.
struct Guard {
    scope: Scope,
    token: Option<Token>,
    failures: IntCounterVec,
}

impl Guard {
    fn admit(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let token = self.token.as_ref().ok_or(Refusal::Disabled)?;
        let presented = bearer(headers)?;
        if token.matches(presented) { Ok(()) } else { Err(Refusal::Wrong) }
    }
}

/// The token of an `Authorization: Bearer <token>` header (the scheme in any case, RFC 7235).
fn bearer(headers: &HeaderMap) -> Result<&[u8], Refusal> {
    let value = headers.get(header::AUTHORIZATION).ok_or(Refusal::Missing)?.as_bytes();
    let (scheme, token) = value.split_at_checked(7).ok_or(Refusal::Malformed)?;
    let token = token.trim_ascii();
    if !scheme.eq_ignore_ascii_case(b"bearer ") || token.is_empty() {
        return Err(Refusal::Malformed);
    }
    Ok(token)
}

fn guard(router: Router<AppState>, scope: Scope, token: Option<Token>, failures: &IntCounterVec) -> Router<AppState> {
    let guard = Arc::new(Guard { scope, token, failures: failures.clone() });
    router.route_layer(middleware::from_fn_with_state(guard, check))
}

async fn check(State(guard): State<Arc<Guard>>, request: Request, next: Next) -> Response {
    match guard.admit(request.headers()) {
        Ok(()) => next.run(request).await,
        Err(refusal) => {
            guard.failures.with_label_values(&[guard.scope.label(), refusal.label()]).inc();
            refusal.error(guard.scope).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    const TOKEN: &str = "0123456789abcdef";

    fn headers(authorization: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(authorization).unwrap());
        h
    }

    #[test]
    fn a_bearer_token_is_read_with_the_scheme_in_any_case() {
        assert_eq!(bearer(&headers(&format!("Bearer {TOKEN}"))), Ok(TOKEN.as_bytes()));
        assert_eq!(bearer(&headers(&format!("bEaReR   {TOKEN} "))), Ok(TOKEN.as_bytes()));
        assert_eq!(bearer(&HeaderMap::new()), Err(Refusal::Missing));
        for bad in ["Basic dXNlcjpwdw==", "Bearer", "Bearer ", "Bearer    ", TOKEN, "Token abcdefghijkl"] {
            assert_eq!(bearer(&headers(bad)), Err(Refusal::Malformed), "{bad}");
        }
    }

    #[test]
    fn only_the_exact_token_matches() {
        let token = Token::new("ADMIN_TOKEN", TOKEN).unwrap();
        assert!(token.matches(TOKEN.as_bytes()));
        for other in ["0123456789abcdeF", "0123456789abcde", "0123456789abcdef0", ""] {
            assert!(!token.matches(other.as_bytes()), "{other}");
        }
    }

    #[test]
    fn a_blank_short_or_unsendable_token_is_refused_naming_its_variable() {
        for (bad, why) in [
            ("", "empty"),
            ("   \t", "empty"),
            ("0123456789abcde", "fewer than 16"),
            ("0123456789 abcdef", "printable ASCII"),
            ("0123456789abcdéf", "printable ASCII"),
        ] {
            let err = Token::new("PRODUCTS_TOKEN", bad).unwrap_err().to_string();
            assert!(err.contains("PRODUCTS_TOKEN") && err.contains(why), "{bad:?}: {err}");
        }
    }

    #[test]
    fn debug_output_never_shows_a_token() {
        let access = Access::new(Some(TOKEN), Some(TOKEN)).unwrap();
        assert!(!format!("{access:?}").contains("0123"), "{access:?}");
    }
}
