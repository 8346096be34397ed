//! authlevel: has this citizen completed a Level4 login since a date? Answered from the IdP's
//! login history. The resource checks the token itself: being on the network is not enough.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{Months, NaiveDate, TimeZone};
use chrono_tz::Europe::Oslo;
use serde_json::{Value, json};

use super::Issuer;
use super::errors::{ErrorCode, OAuthError};
use crate::personid;
use crate::token::Acr;
use crate::web::bearer;

pub const SCOPE: &str = "global/idporten.authlevel.read";
/// eForvaltningsforskriften § 32: the default look-back.
const DEFAULT_MONTHS: u32 = 18;

fn bad_request(description: impl Into<String>) -> Response {
    OAuthError::invalid_request(description).into_response()
}

/// The start of `fraDato` (midnight in Oslo), or of the default window, as a Unix time.
fn window_start(fra_dato: Option<&str>, today: NaiveDate) -> Result<i64, String> {
    let date = match fra_dato {
        None => today.checked_sub_months(Months::new(DEFAULT_MONTHS)).ok_or("the default window cannot be computed")?,
        Some(text) => {
            let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| {
                format!("fraDato {:?} is not a date (yyyy-MM-dd)", text.chars().take(32).collect::<String>())
            })?;
            if date > today {
                return Err(format!("fraDato {date} is in the future"));
            }
            date
        }
    };
    let midnight = date.and_hms_opt(0, 0, 0).ok_or("no midnight")?;
    Oslo.from_local_datetime(&midnight)
        .earliest()
        .map(|t| t.timestamp())
        .ok_or_else(|| "the date has no midnight in Oslo".to_string())
}

pub async fn sikkerhetsnivaa(State(issuer): State<Arc<Issuer>>, headers: HeaderMap, body: String) -> Response {
    // The token first: a request without a valid one learns nothing about the body's rules.
    let token = match bearer::extract(&headers) {
        Ok(token) => token,
        Err(e) => return OAuthError::invalid_token(e.describe()).into_response(),
    };
    let verified = match issuer.verified_access_token(token).await {
        Ok(verified) => verified,
        Err(e) => return e.into_response(),
    };
    if verified.pid.is_some() || !verified.has_scope(SCOPE) {
        let mut error =
            OAuthError::new(ErrorCode::InsufficientScope, format!("authlevel needs a machine token with {SCOPE}"));
        error.bearer_challenge = true;
        return error.into_response();
    }
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !content_type.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json")) {
        return bad_request("the body must be application/json");
    }
    let Ok(request) = serde_json::from_str::<Value>(&body) else {
        return bad_request("the body is not valid JSON");
    };
    let Some(pid) = request.get("personidentifikator").and_then(Value::as_str) else {
        return bad_request("personidentifikator (a string) is required");
    };
    if let Err(e) = personid::validate(pid) {
        return bad_request(format!("personidentifikator is not valid: {e}"));
    }
    let fra_dato = match request.get("fraDato") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => return bad_request("fraDato must be a string yyyy-MM-dd"),
    };
    if let Some(unknown) =
        request.as_object().and_then(|o| o.keys().find(|k| !["personidentifikator", "fraDato"].contains(&k.as_str())))
    {
        return bad_request(format!("unknown field {unknown:?}"));
    }
    let today = chrono::Utc::now().with_timezone(&Oslo).date_naive();
    let since = match window_start(fra_dato, today) {
        Ok(since) => since,
        Err(e) => return bad_request(e),
    };
    let logins = match issuer.state.raw().logins(pid).await {
        Ok(logins) => logins,
        Err(e) => return OAuthError::from(e).into_response(),
    };
    if let Some(audit) = &issuer.audit {
        let pids = [pid.to_owned()];
        let lookup = crate::audit::Lookup {
            request_id: headers.get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-"),
            client_id: verified.client_id.as_deref(),
            consumer_orgno: verified.consumer_orgno.as_deref(),
            on_behalf_of: None,
            route: "authlevel",
            scopes: &verified.scopes,
            pids: &pids,
            outcome: if logins.is_empty() { "not_found" } else { "ok" },
        };
        if audit.record(&lookup).is_err() {
            let mut error = OAuthError::new(
                ErrorCode::TemporarilyUnavailable,
                "the lookup cannot be put on the audit trail, so it is not answered",
            );
            error.retry_after = Some(30);
            return error.into_response();
        }
    }
    if logins.is_empty() {
        // The person is not an ID-porten user: 404 without a body is the only signal.
        return StatusCode::NOT_FOUND.into_response();
    }
    let level4 = logins.iter().any(|l| l.acr == Acr::Level4 && l.time >= since);
    tracing::info!(client = verified.client_id.as_deref().unwrap_or("-"), pid = %personid::mask(pid), "authlevel lookup");
    axum::Json(json!({"personidentifikator": pid, "harbruktnivaa4": level4})).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_defaults_to_eighteen_months_and_refuses_the_future() {
        let today = NaiveDate::from_ymd_opt(2026, 11, 25).unwrap();
        let default = window_start(None, today).unwrap();
        let explicit = window_start(Some("2025-05-25"), today).unwrap();
        assert_eq!(default, explicit);
        assert!(window_start(Some("2026-11-26"), today).unwrap_err().contains("future"));
        assert!(window_start(Some("25.05.2025"), today).unwrap_err().contains("not a date"));
        // Midnight in Oslo in winter is 23:00 UTC the day before.
        assert_eq!(window_start(Some("2026-01-01"), today).unwrap(), 1767222000);
    }
}
