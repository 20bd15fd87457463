//! `/authorize` through HTTP: every branch of RFC 6749 §4.1 with PKCE, the
//! login and consent pages, the session cookie and CSRF.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use sha2::{Digest, Sha256};
use tessera::domain::clients::NewClient;

use crate::common::{PASSWORD, TestApp, TestUser, body};

const REDIRECT: &str = "https://app.example/callback";
const VERIFIER: &str = "a-long-enough-code-verifier-for-pkce-tests-0123456789";

fn challenge() -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(VERIFIER.as_bytes()))
}

/// A cookie-keeping client that does not follow redirects, like a browser
/// whose navigation the test inspects.
struct Browser {
    http: reqwest::Client,
    base: String,
}

impl Browser {
    fn new(app: &TestApp) -> Self {
        let http = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Self {
            http,
            base: app.base.clone(),
        }
    }

    async fn authorize(&self, query: &[(&str, &str)]) -> reqwest::Response {
        self.http
            .get(format!("{}/authorize", self.base))
            .query(query)
            .send()
            .await
            .unwrap()
    }

    async fn post(&self, form: &[(String, String)]) -> reqwest::Response {
        self.http
            .post(format!("{}/authorize", self.base))
            .form(form)
            .send()
            .await
            .unwrap()
    }
}

/// The hidden fields of the page's form, plus `extra`.
fn form_of(html: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut fields = Vec::new();
    for input in html.split("<input type=\"hidden\" ").skip(1) {
        let attr = |name: &str| {
            let start = input.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
            let end = start + input[start..].find('"').unwrap();
            input[start..end]
                .replace("&amp;", "&")
                .replace("&#x2f;", "/")
                .replace("&#x27;", "'")
                .replace("&quot;", "\"")
                .replace("&lt;", "<")
                .replace("&gt;", ">")
        };
        fields.push((attr("name"), attr("value")));
    }
    fields.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    fields
}

fn location(response: &reqwest::Response) -> url::Url {
    assert_eq!(response.status(), StatusCode::SEE_OTHER, "a redirect");
    url::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap()
}

fn param(url: &url::Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

async fn web_client(app: &TestApp, first_party: bool) -> String {
    app.client(NewClient {
        name: "Photo Prints".into(),
        public: true,
        first_party,
        grant_types: vec!["authorization_code".into(), "refresh_token".into()],
        redirect_uris: vec![REDIRECT.into()],
        scopes: vec!["profile".into(), "email".into()],
        ..NewClient::default()
    })
    .await
    .0
}

fn query<'a>(client_id: &'a str, challenge: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", REDIRECT),
        ("scope", "profile email"),
        ("state", "xyz-state"),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
    ]
}

async fn exchange(app: &TestApp, client_id: &str, code: &str) -> reqwest::Response {
    app.post_form(
        "/token",
        None,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", client_id),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ],
    )
    .await
}

/// Logs in on the page; returns the response after the login form.
async fn log_in(browser: &Browser, query: &[(&str, &str)], user: &TestUser) -> reqwest::Response {
    let page = browser.authorize(query).await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    browser
        .post(&form_of(
            &html,
            &[("email", &user.email), ("password", PASSWORD)],
        ))
        .await
}

#[tokio::test]
async fn the_full_flow_with_login_consent_and_a_remembered_session() {
    let app = TestApp::spawn().await;
    let user = app.user("flow").await;
    let client_id = web_client(&app, false).await;
    let challenge = challenge();
    let browser = Browser::new(&app);

    let page = browser.authorize(&query(&client_id, &challenge)).await;
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    let cookie = page.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Lax")
            && !cookie.contains("Secure"),
        "{cookie}"
    );
    let html = page.text().await.unwrap();
    assert!(html.contains("Photo Prints") && html.contains("Sign in"));
    assert!(
        !html.contains("http://") && !html.contains("https://fonts"),
        "no external assets"
    );

    // A wrong password re-renders the form with a generic message.
    let wrong = browser
        .post(&form_of(
            &html,
            &[("email", &user.email), ("password", "wrong password")],
        ))
        .await;
    assert_eq!(wrong.status(), StatusCode::OK);
    let wrong_html = wrong.text().await.unwrap();
    assert!(wrong_html.contains("Email or password is incorrect."));

    // The right one leads to the consent page, which names the scopes.
    let consent = browser
        .post(&form_of(
            &wrong_html,
            &[("email", &user.email), ("password", PASSWORD)],
        ))
        .await;
    assert_eq!(consent.status(), StatusCode::OK);
    let consent_html = consent.text().await.unwrap();
    assert!(
        consent_html.contains("Allow access?") && consent_html.contains("See your email address")
    );
    let approved = browser
        .post(&form_of(&consent_html, &[("decision", "approve")]))
        .await;
    let target = location(&approved);
    assert!(target.as_str().starts_with(REDIRECT));
    assert_eq!(param(&target, "state").as_deref(), Some("xyz-state"));
    assert_eq!(param(&target, "iss"), Some(app.config.issuer.clone()));
    let code = param(&target, "code").unwrap();

    let tokens = exchange(&app, &client_id, &code).await;
    assert_eq!(tokens.status(), StatusCode::OK);
    let tokens = body(tokens).await;
    let me = app
        .get_auth("/api/users/me", tokens["access_token"].as_str().unwrap())
        .await;
    assert_eq!(body(me).await["email"], user.email);

    // Again: the session skips the password, the consent is remembered.
    let again = browser.authorize(&query(&client_id, &challenge)).await;
    let code = param(&location(&again), "code").unwrap();
    assert_eq!(
        exchange(&app, &client_id, &code).await.status(),
        StatusCode::OK
    );

    // prompt=login asks for the password even with a session.
    let mut forced = query(&client_id, &challenge);
    forced.push(("prompt", "login"));
    assert!(
        browser
            .authorize(&forced)
            .await
            .text()
            .await
            .unwrap()
            .contains("Sign in")
    );
}

#[tokio::test]
async fn untrusted_clients_and_redirects_get_a_page_never_a_redirect() {
    let app = TestApp::spawn().await;
    let client_id = web_client(&app, false).await;
    let challenge = challenge();
    let browser = Browser::new(&app);
    let cases: Vec<Vec<(&str, &str)>> = vec![
        vec![
            ("response_type", "code"),
            ("client_id", "unknown"),
            ("redirect_uri", REDIRECT),
        ],
        vec![("response_type", "code"), ("redirect_uri", REDIRECT)],
        {
            let mut q = query(&client_id, &challenge);
            q[2] = ("redirect_uri", "https://evil.example/callback");
            q
        },
        {
            let mut q = query(&client_id, &challenge);
            q[2] = ("redirect_uri", "https://app.example/callback/../evil");
            q
        },
    ];
    for case in cases {
        let response = browser.authorize(&case).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{case:?}");
        assert!(response.headers().get("location").is_none());
        assert!(response.text().await.unwrap().contains("Cannot continue"));
    }
    // A repeated parameter is malformed.
    let url = format!(
        "{}/authorize?client_id={client_id}&client_id=other",
        app.base
    );
    assert_eq!(
        browser.http.get(url).send().await.unwrap().status(),
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn other_errors_go_back_to_the_client_with_state() {
    let app = TestApp::spawn().await;
    let client_id = web_client(&app, false).await;
    let challenge = challenge();
    let browser = Browser::new(&app);
    let with = |name: &'static str, value: &'static str| {
        let mut q = query(&client_id, &challenge);
        q.retain(|(k, _)| *k != name);
        if !value.is_empty() {
            q.push((name, value));
        }
        q
    };
    let cases = [
        (with("response_type", "token"), "unsupported_response_type"),
        (with("scope", "profile admin"), "invalid_scope"),
        (with("code_challenge_method", "plain"), "invalid_request"),
        (with("code_challenge_method", ""), "invalid_request"),
        (with("code_challenge", ""), "invalid_request"),
        (with("prompt", "bogus"), "invalid_request"),
        (with("prompt", "none"), "login_required"),
    ];
    for (case, error) in cases {
        let target = location(&browser.authorize(&case).await);
        assert!(target.as_str().starts_with(REDIRECT));
        assert_eq!(param(&target, "error").as_deref(), Some(error), "{case:?}");
        assert!(param(&target, "error_description").is_some());
        assert_eq!(param(&target, "state").as_deref(), Some("xyz-state"));
    }
}

#[tokio::test]
async fn denial_prompt_none_and_first_party_clients() {
    let app = TestApp::spawn().await;
    let user = app.user("deny").await;
    let client_id = web_client(&app, false).await;
    let challenge = challenge();
    let browser = Browser::new(&app);
    let consent = log_in(&browser, &query(&client_id, &challenge), &user).await;
    let html = consent.text().await.unwrap();
    // Signed in, not yet consented: prompt=none says so.
    let mut silent = query(&client_id, &challenge);
    silent.push(("prompt", "none"));
    assert_eq!(
        param(&location(&browser.authorize(&silent).await), "error").as_deref(),
        Some("consent_required")
    );
    let denied = browser.post(&form_of(&html, &[("decision", "deny")])).await;
    assert_eq!(
        param(&location(&denied), "error").as_deref(),
        Some("access_denied")
    );

    // A first-party client never shows the consent page.
    let first_party = web_client(&app, true).await;
    let target = location(&browser.authorize(&query(&first_party, &challenge)).await);
    assert!(param(&target, "code").is_some());
}

#[tokio::test]
async fn forms_without_the_csrf_token_are_refused() {
    let app = TestApp::spawn().await;
    let user = app.user("csrf").await;
    let client_id = web_client(&app, false).await;
    let challenge = challenge();
    let browser = Browser::new(&app);
    let html = browser
        .authorize(&query(&client_id, &challenge))
        .await
        .text()
        .await
        .unwrap();
    let mut form = form_of(&html, &[("email", &user.email), ("password", PASSWORD)]);
    form.retain(|(k, _)| k != "csrf");
    assert_eq!(browser.post(&form).await.status(), StatusCode::FORBIDDEN);
    form.push(("csrf".into(), "forged".into()));
    assert_eq!(browser.post(&form).await.status(), StatusCode::FORBIDDEN);
    // Another browser (no cookie) with a token copied from this page.
    let other = Browser::new(&app);
    let copied = form_of(&html, &[("email", &user.email), ("password", PASSWORD)]);
    assert_eq!(other.post(&copied).await.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn logging_out_everywhere_forgets_consents() {
    let app = TestApp::spawn().await;
    let user = app.user("forget").await;
    let client_id = web_client(&app, false).await;
    let challenge = challenge();
    let browser = Browser::new(&app);
    let consent_html = log_in(&browser, &query(&client_id, &challenge), &user)
        .await
        .text()
        .await
        .unwrap();
    location(
        &browser
            .post(&form_of(&consent_html, &[("decision", "approve")]))
            .await,
    );
    app.state.tokens.revoke_user(&user.id).await.unwrap();
    // The browser session ended with the epoch: the password is asked again…
    let page = browser.authorize(&query(&client_id, &challenge)).await;
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("name=\"password\""));
    // …and after it, the consent is asked again too.
    let again = log_in(&browser, &query(&client_id, &challenge), &user).await;
    assert!(again.text().await.unwrap().contains("Allow access?"));
}

#[tokio::test]
async fn page_logins_share_the_api_throttling() {
    let app = TestApp::spawn().await;
    let user = app.user("page-throttle").await;
    let client_id = web_client(&app, false).await;
    let challenge = challenge();
    let browser = Browser::new(&app);
    let html = browser
        .authorize(&query(&client_id, &challenge))
        .await
        .text()
        .await
        .unwrap();
    for _ in 0..10 {
        browser
            .post(&form_of(
                &html,
                &[("email", &user.email), ("password", "wrong password")],
            ))
            .await;
    }
    let locked = browser
        .post(&form_of(
            &html,
            &[("email", &user.email), ("password", PASSWORD)],
        ))
        .await;
    assert_eq!(locked.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(locked.headers().contains_key("retry-after"));
    // The API login of the same account is locked as well.
    assert_eq!(
        app.login(&user.email, PASSWORD).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}
