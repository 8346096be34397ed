//! The front channel: `/authorize` (and PAR), the login step at the IdP, consent, and the
//! authorization response. An unknown client or redirect URI gets an error page; every other
//! error goes back to the client (RFC 6749 §4.1.2.1).

// Handlers here return the finished error page as their `Err`: boxing it would gain nothing.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use subtle::ConstantTimeEq;

use super::clients::{self, Client};
use super::errors::{ErrorCode, OAuthError, with_retry_after};
use super::idp::LoginContext;
use super::model::{AuthRequest, Authentication, CodeRecord, Consents, Interaction, ResponseMode, Session};
use super::pages::{self, error_page};
use super::requests::{self, AuthorizationRequest, ClientAuthentication};
use super::scopes::parse_scope;
use super::session::{self, INTERACTION_COOKIE, SSO_COOKIE};
use super::store::{LoginRecord, Space};
use super::{Issuer, random_token, storage_key};
use crate::oauth::params;
use crate::telemetry::excerpt;
use crate::token::Acr;
use crate::token::verify::unix_now;

pub const PAR_URN_PREFIX: &str = "urn:portvakt:par:";
const SUPPORTED_LOCALES: [&str; 4] = ["nb", "nn", "en", "se"];
pub(crate) const MAX_PARAM: usize = 2048;

/// Where an error can go: an error page (untrusted client or redirect URI) or back to the client.
enum Refusal {
    Page(StatusCode, String),
    Redirect { redirect_uri: String, state: Option<String>, mode: ResponseMode, error: OAuthError },
}

/// Parse `a=b&c=d`, refusing repeated parameters (RFC 6749 §3.1) and oversized values.
pub(crate) fn parse_params(text: &str) -> Result<HashMap<String, String>, String> {
    crate::oauth::params::parse(text, Some(MAX_PARAM)).map_err(|e| e.to_string())
}

/// Validate an authorization request's parameters against `client`.
fn validate(issuer: &Issuer, params: &AuthorizationRequest) -> Result<AuthRequest, Refusal> {
    let client_id = params
        .client_id
        .as_ref()
        .ok_or_else(|| Refusal::Page(StatusCode::BAD_REQUEST, "The request has no client_id.".into()))?;
    let client = issuer.clients.get(client_id).ok_or_else(|| {
        Refusal::Page(StatusCode::BAD_REQUEST, format!("Unknown client {:?}.", excerpt(client_id, 64)))
    })?;
    let redirect_uri = params
        .redirect_uri
        .as_ref()
        .ok_or_else(|| Refusal::Page(StatusCode::BAD_REQUEST, "The request has no redirect_uri.".into()))?;
    if !client.redirect_uris.iter().any(|registered| registered == redirect_uri) {
        return Err(Refusal::Page(
            StatusCode::BAD_REQUEST,
            format!("The redirect_uri is not registered for client {}.", client.id),
        ));
    }
    let state = params.state.clone();
    let mode = match params.response_mode.as_deref() {
        None | Some("query") => ResponseMode::Query,
        Some("fragment") => ResponseMode::Fragment,
        Some("form_post") => ResponseMode::FormPost,
        Some(other) => {
            return Err(Refusal::Redirect {
                redirect_uri: redirect_uri.clone(),
                state,
                mode: ResponseMode::Query,
                error: OAuthError::invalid_request(format!("response_mode {:?} is not supported", excerpt(other, 64))),
            });
        }
    };
    let refuse =
        |error: OAuthError| Refusal::Redirect { redirect_uri: redirect_uri.clone(), state: state.clone(), mode, error };
    check_request(issuer, client, params).map_err(refuse)?;
    let scopes =
        parse_scope(params.scope.as_deref().unwrap_or_default()).map_err(|e| refuse(OAuthError::invalid_scope(e)))?;
    let acr = match &params.acr_values {
        None => None,
        Some(values) => {
            let levels = values
                .split(' ')
                .filter(|v| !v.is_empty())
                .map(|v| {
                    Acr::parse(v).ok_or_else(|| format!("acr_values {:?} is not Level3 or Level4", excerpt(v, 64)))
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| refuse(OAuthError::invalid_request(e)))?;
            levels.into_iter().min()
        }
    };
    let locale = params
        .ui_locales
        .as_deref()
        .and_then(|l| l.split(' ').find(|l| SUPPORTED_LOCALES.contains(l)))
        .unwrap_or("nb")
        .to_owned();
    Ok(AuthRequest {
        client_id: client.id.clone(),
        redirect_uri: redirect_uri.clone(),
        scopes,
        state: state.clone(),
        nonce: params.nonce.clone(),
        code_challenge: params.code_challenge.clone(),
        acr,
        prompt_login: params.prompt.as_deref().is_some_and(|p| p.split(' ').any(|p| p == "login")),
        locale,
        response_mode: mode,
    })
}

/// The rules that do not depend on parsing: response type, scopes, PKCE, state, prompt.
fn check_request(issuer: &Issuer, client: &Client, params: &AuthorizationRequest) -> Result<(), OAuthError> {
    match params.response_type.as_deref() {
        Some("code") => {}
        Some(other) => {
            return Err(OAuthError::new(
                ErrorCode::UnsupportedResponseType,
                format!("response_type {:?} is not supported: use code", excerpt(other, 64)),
            ));
        }
        None => return Err(OAuthError::invalid_request("response_type is required")),
    }
    if params.request.is_some() {
        return Err(OAuthError::invalid_request("request objects are not supported: push the request to /par"));
    }
    let scope = params.scope.as_deref().ok_or_else(|| OAuthError::invalid_request("scope is required"))?;
    let scopes = parse_scope(scope).map_err(OAuthError::invalid_scope)?;
    if scopes.is_empty() {
        return Err(OAuthError::invalid_request("scope is required"));
    }
    issuer
        .scopes
        .check(&scopes, client.integration_type, &client.scopes)
        .map_err(|refusal| OAuthError::invalid_scope(refusal.describe()))?;
    match (&params.code_challenge, params.code_challenge_method.as_deref()) {
        (Some(challenge), Some("S256")) => {
            if challenge.len() != 43 || !challenge.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(OAuthError::invalid_request("code_challenge must be a base64url SHA-256 (43 characters)"));
            }
        }
        (Some(_), _) => return Err(OAuthError::invalid_request("code_challenge_method must be S256")),
        (None, Some(_)) => return Err(OAuthError::invalid_request("code_challenge_method without code_challenge")),
        (None, None) if client.require_pkce => {
            return Err(OAuthError::invalid_request(
                "PKCE is required: send code_challenge with code_challenge_method=S256",
            ));
        }
        (None, None) => {}
    }
    if client.is_public() && params.state.is_none() {
        return Err(OAuthError::invalid_request("state is required for public clients"));
    }
    if let Some(prompt) = &params.prompt {
        for value in prompt.split(' ').filter(|v| !v.is_empty()) {
            match value {
                "login" => {}
                "none" => return Err(OAuthError::invalid_request("prompt=none is not supported")),
                other => {
                    return Err(OAuthError::invalid_request(format!(
                        "prompt {:?} is not supported",
                        excerpt(other, 64)
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Send the authorization response (success or error) the way the client asked for.
fn respond(redirect_uri: &str, mode: ResponseMode, params: Vec<(&str, String)>) -> Response {
    if mode == ResponseMode::FormPost {
        return pages::form_post(redirect_uri, &params);
    }
    let encoded = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params.iter().map(|(k, v)| (*k, v.as_str())))
        .finish();
    let location = match mode {
        ResponseMode::Fragment => format!("{redirect_uri}#{encoded}"),
        _ if redirect_uri.contains('?') => format!("{redirect_uri}&{encoded}"),
        _ => format!("{redirect_uri}?{encoded}"),
    };
    redirect(&location)
}

fn redirect(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn error_response(
    issuer: &Issuer,
    redirect_uri: &str,
    state: Option<String>,
    mode: ResponseMode,
    error: &OAuthError,
) -> Response {
    let mut params = vec![("error", error.code.as_str().to_owned()), ("error_description", error.description.clone())];
    if let Some(state) = state {
        params.push(("state", state));
    }
    params.push(("iss", issuer.id.clone()));
    respond(redirect_uri, mode, params)
}

fn refusal_response(issuer: &Issuer, refusal: Refusal) -> Response {
    match refusal {
        Refusal::Page(status, message) => error_page(status, &message),
        Refusal::Redirect { redirect_uri, state, mode, error } => {
            error_response(issuer, &redirect_uri, state, mode, &error)
        }
    }
}

/// The state store refused or failed: 503, with `Retry-After` when it is only full.
fn unavailable(error: &OAuthError) -> Response {
    with_retry_after(error_page(StatusCode::SERVICE_UNAVAILABLE, &error.description), error.retry_after)
}

fn request_error(issuer: &Issuer, request: &AuthRequest, error: OAuthError) -> Response {
    error_response(issuer, &request.redirect_uri, request.state.clone(), request.response_mode, &error)
}

pub async fn authorize_get(
    State(issuer): State<Arc<Issuer>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    authorize(&issuer, &headers, query.as_deref().unwrap_or_default()).await
}

pub async fn authorize_post(State(issuer): State<Arc<Issuer>>, headers: HeaderMap, body: String) -> Response {
    authorize(&issuer, &headers, &body).await
}

async fn authorize(issuer: &Issuer, headers: &HeaderMap, text: &str) -> Response {
    let params: AuthorizationRequest = match parse_params(text).and_then(|p| params::typed(&p)) {
        Ok(params) => params,
        Err(e) => return error_page(StatusCode::BAD_REQUEST, &format!("The request is not valid: {e}.")),
    };
    let request = match &params.request_uri {
        Some(uri) => match pushed_request(issuer, &params, uri).await {
            Ok(request) => request,
            Err(response) => return response,
        },
        None => match validate(issuer, &params) {
            Ok(request) => request,
            Err(refusal) => return refusal_response(issuer, refusal),
        },
    };
    match start(issuer, headers, request).await {
        Ok(response) => response,
        Err(e) => unavailable(&e),
    }
}

/// `/authorize?request_uri=urn:…&client_id=…`: the request pushed to `/par`, used once.
async fn pushed_request(issuer: &Issuer, params: &AuthorizationRequest, uri: &str) -> Result<AuthRequest, Response> {
    let page = |message: &str| Err(error_page(StatusCode::BAD_REQUEST, message));
    let Some(handle) = uri.strip_prefix(PAR_URN_PREFIX) else {
        return page("request_uri must be one returned by /par.");
    };
    let request: Option<AuthRequest> = match issuer.state.take(Space::PushedRequest, &storage_key(handle)).await {
        Ok(request) => request,
        Err(e) => return Err(unavailable(&OAuthError::from(e))),
    };
    let Some(request) = request else {
        return page("The request_uri is unknown, expired or already used: start the login again.");
    };
    if params.client_id.as_ref() != Some(&request.client_id) {
        return page("client_id does not match the pushed request.");
    }
    Ok(request)
}

/// Continue a validated request: reuse the SSO session when it is good enough, else log in.
async fn start(issuer: &Issuer, headers: &HeaderMap, request: AuthRequest) -> Result<Response, OAuthError> {
    if let Some((key, session)) = session::current(issuer, headers).await?
        && !request.prompt_login
        && session.auth.acr >= request.acr.unwrap_or(Acr::Level3)
    {
        let auth = session.auth.clone();
        return after_login(issuer, request, auth, key, session, None).await;
    }
    let interaction_id = random_token();
    let interaction =
        Interaction { csrf: random_token(), request, authentication: None, session: None, consent_needed: Vec::new() };
    save_interaction(issuer, &interaction_id, &interaction).await?;
    let mut response = issuer.idp.begin(&LoginContext {
        action: "/authorize/login",
        interaction: &interaction_id,
        csrf: &interaction.csrf,
        request: &interaction.request,
        error: None,
    });
    response.headers_mut().append(header::SET_COOKIE, session::set_cookie(issuer, INTERACTION_COOKIE, &interaction_id));
    Ok(response)
}

async fn save_interaction(issuer: &Issuer, id: &str, interaction: &Interaction) -> Result<(), OAuthError> {
    let ttl = Duration::from_secs(issuer.lifetimes.interaction_seconds);
    Ok(issuer.state.put(Space::Interaction, &storage_key(id), interaction, ttl).await?)
}

/// After authentication: ask for consent where a scope needs it, else issue the code.
async fn after_login(
    issuer: &Issuer,
    request: AuthRequest,
    auth: Authentication,
    session_key: String,
    session: Session,
    interaction_id: Option<String>,
) -> Result<Response, OAuthError> {
    let consents = load_consents(issuer, &auth.pid, &request.client_id).await?;
    let needed: Vec<String> = request
        .scopes
        .iter()
        .filter(|s| issuer.scopes.get(s).is_some_and(|scope| scope.requires_user_consent))
        .filter(|s| !consents.decisions.contains_key(*s))
        .cloned()
        .collect();
    if needed.is_empty() {
        return finish(issuer, request, auth, session_key, session, &consents).await;
    }
    // The consent form finds the session by its key.
    session::save(issuer, &session_key, &session).await?;
    let id = interaction_id.unwrap_or_else(random_token);
    let interaction = Interaction {
        csrf: random_token(),
        request,
        authentication: Some(auth),
        session: Some(session_key),
        consent_needed: needed,
    };
    save_interaction(issuer, &id, &interaction).await?;
    let described: Vec<(String, String)> = interaction
        .consent_needed
        .iter()
        .map(|s| (s.clone(), issuer.scopes.get(s).map(|scope| scope.description.clone()).unwrap_or_default()))
        .collect();
    let mut response = pages::consent(&interaction.request.client_id, &id, &interaction.csrf, &described);
    response.headers_mut().append(header::SET_COOKIE, session::set_cookie(issuer, INTERACTION_COOKIE, &id));
    Ok(response)
}

/// Keyed (a plain hash of a fødselsnummer is reversed by trying them all): who consented to
/// what is not readable from a shared store's key names.
fn consent_key(issuer: &Issuer, pid: &str, client_id: &str) -> String {
    issuer.mac(&[b"consent\0", pid.as_bytes(), b"\0", client_id.as_bytes()])
}

async fn load_consents(issuer: &Issuer, pid: &str, client_id: &str) -> Result<Consents, OAuthError> {
    Ok(issuer.state.get(Space::Consent, &consent_key(issuer, pid, client_id)).await?.unwrap_or_default())
}

/// Consent decisions are remembered for a year, then asked for again.
const CONSENT_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

/// Issue the authorization code (declined scopes left out) and send the client on.
async fn finish(
    issuer: &Issuer,
    request: AuthRequest,
    auth: Authentication,
    session_key: String,
    mut session: Session,
    consents: &Consents,
) -> Result<Response, OAuthError> {
    let granted: Vec<String> =
        request.scopes.iter().filter(|s| consents.decisions.get(*s) != Some(&false)).cloned().collect();
    if !session.clients.contains(&request.client_id) {
        session.clients.push(request.client_id.clone());
    }
    let code = random_token();
    let record = CodeRecord {
        request: request.clone(),
        auth,
        granted_scopes: granted,
        session_key,
        sid: session.sid.clone(),
        expires_at: unix_now() + issuer.lifetimes.code_seconds as i64,
        redeemed_grant: None,
    };
    // Kept past its lifetime (marked redeemed) so a second redemption can be detected.
    let ttl = Duration::from_secs(issuer.lifetimes.code_seconds + issuer.lifetimes.access_token_seconds);
    let code_key = storage_key(&code);
    tokio::try_join!(
        session::save(issuer, &record.session_key, &session),
        issuer.state.put(Space::AuthorizationCode, &code_key, &record, ttl),
    )?;
    let mut params = vec![("code", code)];
    if let Some(state) = &request.state {
        params.push(("state", state.clone()));
    }
    params.push(("iss", issuer.id.clone()));
    let mut response = respond(&request.redirect_uri, request.response_mode, params);
    response.headers_mut().append(header::SET_COOKIE, session::clear_cookie(issuer, INTERACTION_COOKIE));
    Ok(response)
}

/// A posted form, and the interaction it continues: its id must match the browser's cookie and
/// its CSRF token the one served with the page.
struct Posted {
    form: HashMap<String, String>,
    id: String,
    interaction: Interaction,
}

async fn posted(issuer: &Issuer, headers: &HeaderMap, body: &str) -> Result<Posted, Response> {
    let form = parse_params(body).map_err(|e| error_page(StatusCode::BAD_REQUEST, &e))?;
    let (id, interaction) = interaction_for(issuer, headers, &form).await?;
    Ok(Posted { form, id, interaction })
}

async fn interaction_for(
    issuer: &Issuer,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Result<(String, Interaction), Response> {
    let id = form.get("interaction").cloned().unwrap_or_default();
    let cookie = session::read_cookie(headers, INTERACTION_COOKIE).unwrap_or_default();
    if id.is_empty() || !bool::from(id.as_bytes().ct_eq(cookie.as_bytes())) {
        return Err(error_page(
            StatusCode::BAD_REQUEST,
            "This login page belongs to another browser window or has expired. Start again at the service.",
        ));
    }
    let interaction: Option<Interaction> = match issuer.state.get(Space::Interaction, &storage_key(&id)).await {
        Ok(found) => found,
        Err(e) => return Err(unavailable(&OAuthError::from(e))),
    };
    let Some(interaction) = interaction else {
        return Err(error_page(
            StatusCode::BAD_REQUEST,
            "The login took too long and has expired. Start again at the service.",
        ));
    };
    let csrf = form.get("csrf").cloned().unwrap_or_default();
    if !bool::from(csrf.as_bytes().ct_eq(interaction.csrf.as_bytes())) {
        return Err(error_page(StatusCode::BAD_REQUEST, "The form's CSRF token is wrong. Start again at the service."));
    }
    Ok((id, interaction))
}

/// The IdP's answer (the test IdP's form): on success a new SSO session, then consent or code.
pub async fn login(State(issuer): State<Arc<Issuer>>, headers: HeaderMap, body: String) -> Response {
    let Posted { form, id, interaction } = match posted(&issuer, &headers, &body).await {
        Ok(posted) => posted,
        Err(response) => return response,
    };
    if interaction.authentication.is_some() {
        return error_page(StatusCode::BAD_REQUEST, "This login is already done.");
    }
    let now = unix_now();
    let auth = match issuer.idp.complete(&form, &interaction.request, now) {
        Ok(auth) => auth,
        Err(message) => {
            return issuer.idp.begin(&LoginContext {
                action: "/authorize/login",
                interaction: &id,
                csrf: &interaction.csrf,
                request: &interaction.request,
                error: Some(&message),
            });
        }
    };
    let result = async {
        let record =
            LoginRecord { pid: auth.pid.clone(), acr: auth.acr, method: auth.amr.clone(), time: auth.auth_time };
        let interaction_key = storage_key(&id);
        tokio::try_join!(
            issuer.state.raw().record_login(record),
            issuer.state.delete(Space::Interaction, &interaction_key),
        )?;
        issuer.metrics.issuer.logged_in(auth.acr);
        tracing::info!(pid = %crate::personid::mask(&auth.pid), acr = %auth.acr, client = %interaction.request.client_id, "citizen logged in");
        // A login always starts a new session (no fixation), replacing the browser's old one.
        if let Some((old_key, old)) = session::current(&issuer, &headers).await? {
            session::end(&issuer, &old_key, &old).await?;
        }
        let (secret, key) = session::new_secret();
        // Saved by after_login (with the client added, or before asking for consent).
        let session =
            Session { sid: random_token(), auth: auth.clone(), created: now, clients: Vec::new(), grants: Vec::new() };
        let mut response = after_login(&issuer, interaction.request, auth, key, session, Some(id)).await?;
        response.headers_mut().append(header::SET_COOKIE, session::set_cookie(&issuer, SSO_COOKIE, &secret));
        Ok::<Response, OAuthError>(response)
    };
    result.await.unwrap_or_else(|e| unavailable(&e))
}

/// The consent form: remember the decision for each scope asked about, then issue the code.
pub async fn consent(State(issuer): State<Arc<Issuer>>, headers: HeaderMap, body: String) -> Response {
    let Posted { form, id, interaction } = match posted(&issuer, &headers, &body).await {
        Ok(posted) => posted,
        Err(response) => return response,
    };
    let (Some(auth), Some(session_key)) = (interaction.authentication.clone(), interaction.session.clone()) else {
        return error_page(StatusCode::BAD_REQUEST, "There is nothing to consent to yet: log in first.");
    };
    let approve = match form.get("decision").map(String::as_str) {
        Some("approve") => true,
        Some("deny") => false,
        _ => return error_page(StatusCode::BAD_REQUEST, "Choose approve or deny."),
    };
    let result = async {
        let mut consents = load_consents(&issuer, &auth.pid, &interaction.request.client_id).await?;
        for scope in &interaction.consent_needed {
            consents.decisions.insert(scope.clone(), approve);
        }
        let key = consent_key(&issuer, &auth.pid, &interaction.request.client_id);
        issuer.state.put(Space::Consent, &key, &consents, CONSENT_TTL).await?;
        issuer.state.delete(Space::Interaction, &storage_key(&id)).await?;
        let session: Option<Session> = issuer.state.get(Space::Session, &session_key).await?;
        let Some(session) = session else {
            return Ok(request_error(
                &issuer,
                &interaction.request,
                OAuthError::new(ErrorCode::AccessDenied, "the session ended before consent was given"),
            ));
        };
        finish(&issuer, interaction.request, auth, session_key, session, &consents).await
    };
    result.await.unwrap_or_else(|e: OAuthError| unavailable(&e))
}

/// The citizen cancelled: `access_denied` back to the client.
pub async fn cancel(State(issuer): State<Arc<Issuer>>, headers: HeaderMap, body: String) -> Response {
    let Posted { id, interaction, .. } = match posted(&issuer, &headers, &body).await {
        Ok(posted) => posted,
        Err(response) => return response,
    };
    let _ = issuer.state.delete(Space::Interaction, &storage_key(&id)).await;
    request_error(
        &issuer,
        &interaction.request,
        OAuthError::new(ErrorCode::AccessDenied, "the citizen cancelled the login"),
    )
}

/// RFC 9126 pushed authorization requests: validated now, used once within 120 s.
pub async fn par(State(issuer): State<Arc<Issuer>>, headers: HeaderMap, body: String) -> Response {
    let result = async {
        let form = parse_params(&body).map_err(OAuthError::invalid_request)?;
        let authentication: ClientAuthentication = requests::read(&form)?;
        let client = clients::authenticate(&issuer, &headers, &authentication).await?.client;
        let mut params: AuthorizationRequest = requests::read(&form)?;
        if params.request_uri.is_some() {
            return Err(OAuthError::invalid_request("request_uri may not be pushed"));
        }
        if params.client_id.as_ref().is_some_and(|id| *id != client.id) {
            return Err(OAuthError::invalid_request("client_id differs from the authenticated client"));
        }
        params.client_id = Some(client.id.clone());
        let request = validate(&issuer, &params).map_err(|refusal| match refusal {
            Refusal::Page(_, message) => OAuthError::invalid_request(message),
            Refusal::Redirect { error, .. } => error,
        })?;
        let handle = random_token();
        let ttl = Duration::from_secs(issuer.lifetimes.par_seconds);
        issuer.state.put(Space::PushedRequest, &storage_key(&handle), &request, ttl).await?;
        Ok((
            StatusCode::CREATED,
            [(header::CACHE_CONTROL, "no-store")],
            axum::Json(
                json!({"request_uri": format!("{PAR_URN_PREFIX}{handle}"), "expires_in": issuer.lifetimes.par_seconds}),
            ),
        )
            .into_response())
    };
    result.await.unwrap_or_else(|e: OAuthError| e.into_response())
}
