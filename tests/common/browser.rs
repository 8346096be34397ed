//! A browser as the login and consent pages meet it: cookies, forms as served, redirects.

use std::sync::Mutex;

/// An HTML form as served: its action and every named field with its value.
#[derive(Debug, Clone)]
pub struct Form {
    pub action: String,
    pub fields: Vec<(String, String)>,
}

impl Form {
    pub fn set(mut self, name: &str, value: &str) -> Form {
        self.fields.retain(|(n, _)| n != name);
        self.fields.push((name.to_owned(), value.to_owned()));
        self
    }
}

pub fn forms(html: &str) -> Vec<Form> {
    let document = scraper::Html::parse_document(html);
    let form_selector = scraper::Selector::parse("form").unwrap();
    let input_selector = scraper::Selector::parse("input[name]").unwrap();
    document
        .select(&form_selector)
        .map(|form| Form {
            action: form.value().attr("action").unwrap_or_default().to_owned(),
            fields: form
                .select(&input_selector)
                .map(|input| {
                    let value = input.value();
                    (
                        value.attr("name").unwrap_or_default().to_owned(),
                        value.attr("value").unwrap_or_default().to_owned(),
                    )
                })
                .collect(),
        })
        .collect()
}

/// One answer as a browser sees it (redirects are not followed).
#[derive(Debug)]
pub struct Page {
    pub status: u16,
    pub location: Option<String>,
    pub body: String,
}

impl Page {
    /// A query (or fragment) parameter of the redirect target.
    pub fn redirect_param(&self, name: &str) -> Option<String> {
        let location = self.location.as_deref()?;
        let url = url::Url::parse(location).ok()?;
        let from_query = url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned());
        from_query.or_else(|| {
            url::form_urlencoded::parse(url.fragment()?.as_bytes())
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        })
    }
}

/// A cookie-keeping HTTP client that stops at every redirect, like a browser under test.
pub struct Browser {
    http: reqwest::Client,
    cookies: Mutex<std::collections::BTreeMap<String, String>>,
}

impl Browser {
    pub fn new() -> Browser {
        Browser {
            http: reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap(),
            cookies: Mutex::new(Default::default()),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies.lock().unwrap().iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    pub fn cookie(&self, name: &str) -> Option<String> {
        self.cookies.lock().unwrap().get(name).cloned()
    }

    async fn finish(&self, response: reqwest::Response) -> Page {
        for value in response.headers().get_all("set-cookie") {
            let text = value.to_str().unwrap();
            let (pair, attributes) = text.split_once(';').unwrap_or((text, ""));
            let (name, value) = pair.split_once('=').unwrap();
            if attributes.contains("Max-Age=0") {
                self.cookies.lock().unwrap().remove(name.trim());
            } else {
                self.cookies.lock().unwrap().insert(name.trim().to_owned(), value.trim().to_owned());
            }
        }
        let status = response.status().as_u16();
        let location = response.headers().get("location").map(|v| v.to_str().unwrap().to_owned());
        Page { status, location, body: response.text().await.unwrap() }
    }

    pub async fn get(&self, url: &str) -> Page {
        let response = self.http.get(url).header("cookie", self.cookie_header()).send().await.expect("GET");
        self.finish(response).await
    }

    /// Submit `form` (as served, with changes) relative to `base`.
    pub async fn submit(&self, base: &str, form: &Form) -> Page {
        let url = if form.action.starts_with("http") { form.action.clone() } else { format!("{base}{}", form.action) };
        let response =
            self.http.post(url).header("cookie", self.cookie_header()).form(&form.fields).send().await.expect("POST");
        self.finish(response).await
    }
}

impl Default for Browser {
    fn default() -> Self {
        Browser::new()
    }
}

/// A citizen's authorization code: `/authorize` with PKCE (`CHALLENGE`) for `client`, then the
/// test IdP's form filled in as `pid` at Level3, as a browser would.
pub async fn citizen_code(issuer: &str, client: &str, redirect: &str, scope: &str, pid: &str) -> String {
    let mut url = url::Url::parse(&format!("{issuer}/authorize")).expect("the issuer's URL");
    url.query_pairs_mut()
        .append_pair("client_id", client)
        .append_pair("redirect_uri", redirect)
        .append_pair("response_type", "code")
        .append_pair("scope", scope)
        .append_pair("state", "s")
        .append_pair("code_challenge", super::CHALLENGE)
        .append_pair("code_challenge_method", "S256");
    let browser = Browser::new();
    let page = browser.get(url.as_str()).await;
    let form = forms(&page.body).into_iter().find(|f| f.action == "/authorize/login").expect("the login form");
    let answer = browser.submit(issuer, &form.set("pid", pid).set("acr", "Level3")).await;
    answer.redirect_param("code").expect("a code")
}
