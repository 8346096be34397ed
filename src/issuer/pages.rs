//! The issuer's HTML: the login and consent forms, error pages, the form_post response and the
//! logout page. Plain server-rendered forms that work without JavaScript, written as askama
//! templates (`src/issuer/templates/`), which escape every value they are given.

use askama::Template;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

use crate::token::Acr;

/// Render a page that must not be cached or framed.
fn page(status: StatusCode, template: &impl Template) -> Response {
    let mut response = render(status, template);
    let headers = response.headers_mut();
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action *; frame-ancestors 'none'; frame-src *",
        ),
    );
    response
}

fn render(status: StatusCode, template: &impl Template) -> Response {
    let mut response = match template.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a page could not be rendered");
            (StatusCode::INTERNAL_SERVER_ERROR, "the page could not be rendered\n").into_response()
        }
    };
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    message: &'a str,
}

/// Shown instead of redirecting when the client or its redirect URI cannot be trusted.
pub fn error_page(status: StatusCode, message: &str) -> Response {
    page(status, &ErrorPage { message })
}

#[derive(Template)]
#[template(path = "consent.html")]
struct ConsentPage<'a> {
    client_id: &'a str,
    interaction: &'a str,
    csrf: &'a str,
    scopes: &'a [(String, String)],
}

/// The consent page: the scopes the citizen is asked about (name, description), approve or deny.
pub fn consent(client_id: &str, interaction: &str, csrf: &str, scopes: &[(String, String)]) -> Response {
    page(StatusCode::OK, &ConsentPage { client_id, interaction, csrf, scopes })
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    client_id: &'a str,
    action: &'a str,
    interaction: &'a str,
    csrf: &'a str,
    error: Option<&'a str>,
    required: Acr,
    levels: [(Acr, &'static str); 2],
}

/// The test IdP's login form: `pid` and `acr`, the level the service asks for chosen.
pub fn login(
    client_id: &str,
    action: &str,
    interaction: &str,
    csrf: &str,
    error: Option<&str>,
    required: Acr,
) -> Response {
    let levels = [(Acr::Level3, "substantial, e.g. MinID"), (Acr::Level4, "high, e.g. BankID")];
    let status = if error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    page(status, &LoginPage { client_id, action, interaction, csrf, error, required, levels })
}

#[derive(Template)]
#[template(path = "form_post.html")]
struct FormPost<'a> {
    redirect_uri: &'a str,
    params: &'a [(&'a str, String)],
}

/// OAuth 2.0 Form Post Response Mode: an auto-submitting form to the client.
pub fn form_post(redirect_uri: &str, params: &[(&str, String)]) -> Response {
    let mut response = render(StatusCode::OK, &FormPost { redirect_uri, params });
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; script-src 'unsafe-inline'; form-action *"),
    );
    response
}

#[derive(Template)]
#[template(path = "confirm_logout.html")]
struct ConfirmLogout<'a> {
    confirmation: &'a str,
}

/// Logout asked for without an `id_token_hint`: the citizen confirms with a form only this
/// browser's session can produce.
pub fn confirm_logout(confirmation: &str) -> Response {
    page(StatusCode::OK, &ConfirmLogout { confirmation })
}

#[derive(Template)]
#[template(path = "logged_out.html")]
struct LoggedOut<'a> {
    frontchannel: &'a [String],
    continue_to: Option<&'a str>,
}

/// After logout: front-channel iframes for the session's other clients, then on to the client.
pub fn logged_out(frontchannel: &[String], continue_to: Option<&str>) -> Response {
    page(StatusCode::OK, &LoggedOut { frontchannel, continue_to })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_is_escaped() {
        let page = ConsentPage {
            client_id: "<script>x</script>",
            interaction: "\"><b>",
            csrf: "c",
            scopes: &[("a&b".into(), "'q'".into())],
        };
        let html = page.render().unwrap();
        assert!(!html.contains("<script>x") && !html.contains("\"><b>") && !html.contains("a&b"), "{html}");
        assert!(
            html.contains("&#60;script&#62;x") && html.contains("a&#38;b") && html.contains("&#34;&#62;"),
            "{html}"
        );
    }
}
