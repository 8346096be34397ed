//! The issuer's HTML: the login and consent forms, error pages, the form_post response and the
//! logout page. Plain server-rendered forms: they work without JavaScript.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

/// Escape text for HTML element content and double-quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;color:#1b1b1b}\
h1{font-size:1.4rem}label{display:block;margin:.8rem 0 .2rem}input,select{font-size:1rem;padding:.4rem;width:100%;box-sizing:border-box}\
button{font-size:1rem;padding:.5rem 1.2rem;margin:1rem .5rem 0 0}.error{color:#a4000f;font-weight:600}.note{color:#555;font-size:.9rem}";

/// A page that must not be cached or framed.
pub fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
<title>{}</title><style>{STYLE}</style></head><body>{body}</body></html>",
        escape(title)
    );
    let mut response = (status, Html(html)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action *; frame-ancestors 'none'; frame-src *",
        ),
    );
    response
}

/// Shown instead of redirecting when the client or its redirect URI cannot be trusted.
pub fn error_page(status: StatusCode, message: &str) -> Response {
    let body = format!(
        "<h1>The login cannot continue</h1><p class=\"error\">{}</p><p class=\"note\">Go back to the service you came from and try again.</p>",
        escape(message)
    );
    page(status, "Error", &body)
}

pub fn hidden(name: &str, value: &str) -> String {
    format!("<input type=\"hidden\" name=\"{}\" value=\"{}\">", escape(name), escape(value))
}

/// The consent page: the scopes the citizen is asked about, approve or deny.
pub fn consent(client_id: &str, interaction: &str, csrf: &str, scopes: &[(String, String)]) -> Response {
    let items: String = scopes
        .iter()
        .map(|(name, description)| {
            let text = if description.is_empty() { String::new() } else { format!(" — {}", escape(description)) };
            format!("<li><code>{}</code>{text}</li>", escape(name))
        })
        .collect();
    let body = format!(
        "<h1>Share your data with {client}?</h1><p>{client} asks for access to:</p><ul>{items}</ul>\
<form method=\"post\" action=\"/authorize/consent\">{interaction}{csrf}\
<button type=\"submit\" name=\"decision\" value=\"approve\">Approve</button>\
<button type=\"submit\" name=\"decision\" value=\"deny\">Deny</button></form>\
<p class=\"note\">Your decision is remembered; you can change it by logging in again.</p>",
        client = escape(client_id),
        interaction = hidden("interaction", interaction),
        csrf = hidden("csrf", csrf),
    );
    page(StatusCode::OK, "Consent", &body)
}

/// OAuth 2.0 Form Post Response Mode: an auto-submitting form to the client.
pub fn form_post(redirect_uri: &str, params: &[(&str, String)]) -> Response {
    let fields: String = params.iter().map(|(name, value)| hidden(name, value)).collect();
    let html = format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Continue</title></head>\
<body onload=\"document.forms[0].submit()\"><form method=\"post\" action=\"{}\">{fields}\
<noscript><button type=\"submit\">Continue</button></noscript></form></body></html>",
        escape(redirect_uri)
    );
    let mut response = (StatusCode::OK, Html(html)).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; script-src 'unsafe-inline'; form-action *"),
    );
    response
}

/// Logout asked for without an `id_token_hint`: the citizen confirms with a form only this
/// browser's session can produce.
pub fn confirm_logout(confirmation: &str) -> Response {
    let body = format!(
        "<h1>Log out?</h1><p>You are about to log out of every service you logged in to here.</p>\
<form method=\"post\" action=\"/endsession\">{}<button type=\"submit\">Log out</button></form>",
        hidden("confirm", confirmation)
    );
    page(StatusCode::OK, "Log out", &body)
}

/// After logout: front-channel iframes for the session's other clients, then on to the client.
pub fn logged_out(frontchannel: &[String], continue_to: Option<&str>) -> Response {
    let frames: String = frontchannel
        .iter()
        .map(|src| format!("<iframe src=\"{}\" style=\"display:none\" title=\"logout\"></iframe>", escape(src)))
        .collect();
    let onward = match continue_to {
        Some(url) => format!(
            "<p><a id=\"continue\" href=\"{0}\">Continue</a></p><meta http-equiv=\"refresh\" content=\"2;url={0}\">",
            escape(url)
        ),
        None => String::new(),
    };
    page(StatusCode::OK, "Logged out", &format!("<h1>You are logged out</h1>{frames}{onward}"))
}
