//! The self-service pages (`/account/*`) through HTTP, as a browser without
//! JavaScript uses them: CSRF on every form, the tamper-proof return to a
//! pending authorization request, hostile and oversized fields, budgets
//! shared with the JSON API, and no account enumeration.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use tessera::domain::clients::NewClient;

use crate::common::{
    Backend, PASSWORD, RedisServer, TestApp, body, free_port, otp_in, unique_email,
};
use crate::on_every_backend;

const REDIRECT: &str = "https://app.example/callback";

/// A cookie-keeping client that does not follow redirects.
pub struct Browser {
    http: reqwest::Client,
    base: String,
}

impl Browser {
    pub fn new(app: &TestApp) -> Self {
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

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
    }

    /// The page's HTML (status checked).
    pub async fn page(&self, path: &str) -> String {
        let response = self.get(path).await;
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        response.text().await.unwrap()
    }

    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.base))
            .form(form)
            .send()
            .await
            .unwrap()
    }

    /// Submits the form of `page` whose hidden `action` is `action` (or the
    /// first form) with its hidden fields and `fields`.
    pub async fn submit(
        &self,
        path: &str,
        page: &str,
        action: Option<&str>,
        fields: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut form = hidden_fields(page, action);
        for (name, value) in fields {
            form.push(((*name).to_owned(), (*value).to_owned()));
        }
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        self.post(path, &form).await
    }
}

fn unescape(value: &str) -> String {
    value
        .replace("&#x2f;", "/")
        .replace("&#x27;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

fn attr(tag: &str, name: &str) -> Option<String> {
    let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    let end = start + tag[start..].find('"')?;
    Some(unescape(&tag[start..end]))
}

/// The hidden fields of the form with hidden `action` (or of the first form).
pub fn hidden_fields(page: &str, action: Option<&str>) -> Vec<(String, String)> {
    let forms = page
        .split("<form")
        .skip(1)
        .map(|f| f.split("</form>").next().unwrap());
    for form in forms {
        let fields: Vec<(String, String)> = form
            .split("<input")
            .skip(1)
            .filter(|input| input.contains("type=\"hidden\""))
            .filter_map(|input| Some((attr(input, "name")?, attr(input, "value")?)))
            .collect();
        let matches = match action {
            None => true,
            Some(action) => fields.iter().any(|(k, v)| k == "action" && v == action),
        };
        if matches {
            return fields;
        }
    }
    panic!("no form for {action:?} in {page}");
}

/// The `href` of the link whose path starts with `prefix`.
fn link(page: &str, prefix: &str) -> String {
    let page = unescape(page);
    let start = page
        .find(&format!("href=\"{prefix}"))
        .unwrap_or_else(|| panic!("no link to {prefix} in {page}"))
        + 6;
    page[start..start + page[start..].find('"').unwrap()].to_owned()
}

pub fn location(response: &reqwest::Response) -> String {
    assert_eq!(response.status(), StatusCode::SEE_OTHER, "a redirect");
    response.headers()["location"].to_str().unwrap().to_owned()
}

/// The code of the `count`-th mail to `email` in the mail folder (`.eml`).
pub async fn mailed_code(app: &TestApp, email: &str, count: usize) -> String {
    let folder = app.config.data_dir.join("mail");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut mails: Vec<(std::time::SystemTime, String)> = std::fs::read_dir(&folder)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
            .filter_map(|e| {
                let text = std::fs::read_to_string(e.path()).ok()?;
                let to = text
                    .lines()
                    .find(|l| l.to_ascii_lowercase().starts_with("to:"))?;
                let modified = e.metadata().ok()?.modified().ok()?;
                to.contains(email).then_some((modified, text))
            })
            .collect();
        if mails.len() >= count {
            mails.sort_by_key(|m| m.0);
            return otp_in(&mails[count - 1].1);
        }
        assert!(Instant::now() < deadline, "no mail {count} to {email}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn web_client(app: &TestApp) -> String {
    app.client(NewClient {
        name: "Photo Prints".into(),
        public: true,
        grant_types: vec!["authorization_code".into(), "refresh_token".into()],
        redirect_uris: vec![REDIRECT.into()],
        scopes: vec!["profile".into(), "email".into()],
        ..NewClient::default()
    })
    .await
    .0
}

fn authorize_path(client_id: &str) -> String {
    let mut url = url::Url::parse("http://x/authorize").unwrap();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("scope", "profile email")
        .append_pair("state", "s-1")
        .append_pair(
            "code_challenge",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        )
        .append_pair("code_challenge_method", "S256");
    format!("/authorize?{}", url.query().unwrap())
}

async fn sign_up(browser: &Browser, email: &str) -> reqwest::Response {
    let page = browser.page("/account/signup").await;
    browser
        .submit(
            "/account/signup",
            &page,
            None,
            &[
                ("email", email),
                ("password", PASSWORD),
                ("fname", "Ada"),
                ("lname", "Lovelace"),
            ],
        )
        .await
}

/// Sign up, edit the profile and the mobile, change the password (which
/// signs this browser out), sign in again, sign out.
async fn account_pages_walk(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let browser = Browser::new(&app);
    let email = unique_email("pages");
    let created = sign_up(&browser, &email).await;
    assert_eq!(location(&created), "/account?done=welcome");
    let page = browser.page("/account?done=welcome").await;
    assert!(page.contains("Your account is ready.") && page.contains(&email));

    let saved = browser
        .submit(
            "/account",
            &page,
            Some("profile"),
            &[
                ("fname", "Augusta"),
                ("lname", "King"),
                ("gender", "female"),
            ],
        )
        .await;
    assert_eq!(location(&saved), "/account?done=profile");
    let saved = browser
        .submit(
            "/account",
            &page,
            Some("mobile"),
            &[("mobile", "+14155552671")],
        )
        .await;
    assert_eq!(location(&saved), "/account?done=mobile");
    let token = body(app.login(&email, PASSWORD).await).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let me = body(app.get_auth("/api/users/me", &token).await).await;
    assert_eq!(
        (
            me["fname"].as_str(),
            me["gender"].as_str(),
            me["mobile"].as_str()
        ),
        (Some("Augusta"), Some("female"), Some("+14155552671"))
    );

    // A wrong current password: 403 as in the API, next to its field.
    let refused = browser
        .submit(
            "/account",
            &page,
            Some("password"),
            &[
                ("old_password", "not the password"),
                ("new_password", "a brand new password"),
            ],
        )
        .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let html = refused.text().await.unwrap();
    assert!(
        html.contains("id=\"password-old_password-error\""),
        "{html}"
    );
    assert!(html.contains("the current password is incorrect"));
    assert!(!html.contains("not the password") && !html.contains("a brand new password"));

    let changed = browser
        .submit(
            "/account",
            &page,
            Some("password"),
            &[
                ("old_password", PASSWORD),
                ("new_password", "a brand new password"),
            ],
        )
        .await;
    assert_eq!(location(&changed), "/account?done=password");
    let signin = browser.page("/account?done=password").await;
    assert!(signin.contains("Sign in with the new password"), "{signin}");
    // The API token from before the change is dead too.
    assert_eq!(
        app.get_auth("/api/users/me", &token).await.status(),
        StatusCode::UNAUTHORIZED
    );

    let signed_in = browser
        .submit(
            "/account",
            &signin,
            Some("login"),
            &[("email", &email), ("password", "a brand new password")],
        )
        .await;
    assert_eq!(location(&signed_in), "/account");
    let page = browser.page("/account").await;
    assert!(page.contains("value=\"Augusta\""), "{page}");
    let out = browser
        .submit("/account", &page, Some("signout"), &[])
        .await;
    assert_eq!(location(&out), "/account?done=signed_out");
    let after = browser.page("/account?done=signed_out").await;
    assert!(after.contains("You are signed out.") && after.contains("action\" value=\"login\""));
}

/// Ten wrong passwords on the page, then the API login is throttled: one
/// budget, whatever the door.
async fn page_logins_share_the_api_budget(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let user = app.user("pages-budget").await;
    let browser = Browser::new(&app);
    let page = browser.page("/account").await;
    for _ in 0..10 {
        let refused = browser
            .submit(
                "/account",
                &page,
                Some("login"),
                &[("email", &user.email), ("password", "wrong password!")],
            )
            .await;
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
        let html = refused.text().await.unwrap();
        assert!(html.contains("email or password is incorrect"));
    }
    let api = app.login(&user.email, PASSWORD).await;
    assert_eq!(api.status(), StatusCode::TOO_MANY_REQUESTS);
    let throttled = browser
        .submit(
            "/account",
            &page,
            Some("login"),
            &[("email", &user.email), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(throttled.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(throttled.headers().contains_key("retry-after"));
    assert!(throttled.text().await.unwrap().contains("Try again in"));
}

async fn refresh(app: &TestApp, refresh_token: &str) -> reqwest::Response {
    app.post_form(
        "/token",
        None,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", "tessera"),
            ("refresh_token", refresh_token),
        ],
    )
    .await
}

/// The sections on `AccountService`: sign one session out, verify the
/// email with the mailed code, sign out everywhere, delete the account.
async fn account_sections_walk(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let browser = Browser::new(&app);
    let email = unique_email("sections");
    assert_eq!(
        location(&sign_up(&browser, &email).await),
        "/account?done=welcome"
    );
    let other = body(app.login(&email, PASSWORD).await).await;
    let page = browser.page("/account").await;
    assert!(page.contains("Tessera"), "{page}");
    let session = hidden_fields(&page, Some("revoke_session"));
    assert!(session.iter().any(|(k, _)| k == "session"));
    let out = browser
        .submit("/account", &page, Some("revoke_session"), &[])
        .await;
    assert_eq!(location(&out), "/account?done=session_revoked");
    let dead = refresh(&app, other["refresh_token"].as_str().unwrap()).await;
    crate::common::assert_oauth_error(dead, 400, "invalid_grant").await;
    // Someone else's session, or none: a 404 page, nothing ends.
    let stranger = app.user("sections-other").await;
    let mut form = hidden_fields(&page, Some("revoke_session"));
    for (k, v) in &mut form {
        if k == "session" {
            *v = tessera::crypto::secret::RefreshToken::parse(&stranger.refresh_token)
                .unwrap()
                .family_id()
                .to_owned();
        }
    }
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        browser.post("/account", &form).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        refresh(&app, &stranger.refresh_token).await.status(),
        StatusCode::OK
    );
    let csrf = hidden_fields(&page, Some("profile"))[0].1.clone();
    let not_an_app = browser
        .post(
            "/account",
            &[
                ("csrf", &csrf),
                ("action", "revoke_app"),
                ("client_id", "no-such-client"),
            ],
        )
        .await;
    assert_eq!(not_an_app.status(), StatusCode::NOT_FOUND);

    // Verify the email: a wrong code next to its field, then the mailed one.
    let sent = browser
        .submit("/account", &page, Some("send_code"), &[])
        .await;
    assert_eq!(location(&sent), "/account?done=code_sent");
    let code = mailed_code(&app, &email, 1).await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let refused = browser
        .submit("/account", &page, Some("verify_email"), &[("otp", wrong)])
        .await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let html = refused.text().await.unwrap();
    assert!(html.contains("id=\"verify-otp-error\"") && !html.contains(wrong));
    let verified = browser
        .submit("/account", &page, Some("verify_email"), &[("otp", &code)])
        .await;
    assert_eq!(location(&verified), "/account?done=verified");
    assert!(browser.page("/account").await.contains("is verified"));

    // Sign out everywhere: this browser and every session.
    let second = body(app.login(&email, PASSWORD).await).await;
    let page = browser.page("/account").await;
    let everywhere = browser
        .submit("/account", &page, Some("sign_out_everywhere"), &[])
        .await;
    assert_eq!(location(&everywhere), "/account?done=everywhere");
    let dead = refresh(&app, second["refresh_token"].as_str().unwrap()).await;
    crate::common::assert_oauth_error(dead, 400, "invalid_grant").await;
    let signin = browser.page("/account?done=everywhere").await;
    assert!(signin.contains("action\" value=\"login\""), "{signin}");

    // Delete: a wrong password next to its field, then the right one.
    let signed_in = browser
        .submit(
            "/account",
            &signin,
            Some("login"),
            &[("email", &email), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(location(&signed_in), "/account");
    let page = browser.page("/account").await;
    let refused = browser
        .submit(
            "/account",
            &page,
            Some("delete"),
            &[("password", "not the password")],
        )
        .await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert!(
        refused
            .text()
            .await
            .unwrap()
            .contains("id=\"delete-password-error\"")
    );
    let deleted = browser
        .submit("/account", &page, Some("delete"), &[("password", PASSWORD)])
        .await;
    assert_eq!(location(&deleted), "/account?done=deleted");
    assert!(
        browser
            .page("/account?done=deleted")
            .await
            .contains("Your account was deleted.")
    );
    assert_eq!(
        app.login(&email, PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

on_every_backend!(
    account_pages_walk,
    account_sections_walk,
    page_logins_share_the_api_budget
);

#[tokio::test]
async fn every_form_needs_the_csrf_token_of_its_browser() {
    let app = TestApp::spawn().await;
    let browser = Browser::new(&app);
    let email = unique_email("csrf");
    let fields = [
        ("email", email.as_str()),
        ("password", PASSWORD),
        ("fname", "A"),
        ("lname", "B"),
    ];
    for (path, extra) in [
        ("/account/signup", &fields[..]),
        ("/account/forgot", &fields[..1]),
        (
            "/account/reset",
            &[
                ("email", email.as_str()),
                ("otp", "123456"),
                ("new_password", PASSWORD),
            ][..],
        ),
        (
            "/account",
            &[
                ("action", "login"),
                ("email", email.as_str()),
                ("password", PASSWORD),
            ][..],
        ),
    ] {
        // No token, then another browser's token.
        let refused = browser.post(path, extra).await;
        assert_eq!(refused.status(), StatusCode::FORBIDDEN, "{path}");
        let other = Browser::new(&app);
        let other_page = other.page("/account/signup").await;
        let mut forged = hidden_fields(&other_page, None);
        forged.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let forged: Vec<(&str, &str)> = forged
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            browser.post(path, &forged).await.status(),
            StatusCode::FORBIDDEN,
            "{path}"
        );
    }
    assert_eq!(
        app.login(&email, PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED,
        "no account was made"
    );
    // A cross-site form posted to a signed-in browser cannot change a thing.
    let victim = Browser::new(&app);
    assert_eq!(
        location(&sign_up(&victim, &email).await),
        "/account?done=welcome"
    );
    let forged = victim
        .post("/account", &[("action", "profile"), ("fname", "Mallory")])
        .await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert!(!victim.page("/account").await.contains("Mallory"));
}

#[tokio::test]
async fn sign_up_from_the_sign_in_page_returns_to_the_request() {
    let app = TestApp::spawn().await;
    let client_id = web_client(&app).await;
    let browser = Browser::new(&app);
    let authorize = authorize_path(&client_id);
    let login = browser.page(&authorize).await;
    let forgot = link(&login, "/account/forgot?return=");
    let signup = link(&login, "/account/signup?return=");
    assert!(browser.page(&forgot).await.contains("name=\"return\""));
    let page = browser.page(&signup).await;
    assert_eq!(link(&page, "/authorize?"), authorize, "sign in instead");
    let email = unique_email("return");
    let created = browser
        .submit(
            "/account/signup",
            &page,
            None,
            &[
                ("email", &email),
                ("password", PASSWORD),
                ("fname", "Ada"),
                ("lname", "L"),
            ],
        )
        .await;
    assert_eq!(location(&created), authorize);
    // Signed in: the request goes on to consent, then to the client.
    let consent = browser.page(&authorize).await;
    assert!(consent.contains("Allow access?"), "{consent}");
}

#[tokio::test]
async fn a_forged_or_altered_return_is_ignored() {
    let app = TestApp::spawn().await;
    let client_id = web_client(&app).await;
    let browser = Browser::new(&app);
    let login = browser.page(&authorize_path(&client_id)).await;
    let sealed = link(&login, "/account/signup?return=")
        .split_once("return=")
        .unwrap()
        .1
        .to_owned();
    let (payload, mac) = sealed.split_once('.').unwrap();
    let mut altered_mac = mac.to_owned();
    altered_mac.replace_range(..1, if mac.starts_with('A') { "B" } else { "A" });
    let evil = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        "9999999999.response_type=code&client_id=evil",
    );
    let hostile = [
        format!("{payload}.{altered_mac}"),
        format!("{evil}.{mac}"),
        "https://evil.example/".to_owned(),
        "//evil.example".to_owned(),
        format!("{payload}.{mac}{}", "A".repeat(5000)),
        "\u{0}<script>".to_owned(),
    ];
    for forged in &hostile {
        let query: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("return", forged)
            .finish();
        let page = browser.page(&format!("/account/signup?{query}")).await;
        assert!(
            !page.contains("name=\"return\""),
            "a forged return is not carried"
        );
        assert!(!page.contains("evil") && !page.contains("<script>"));
        let email = unique_email("forged");
        let created = browser
            .submit(
                "/account/signup",
                &page,
                None,
                &[
                    ("return", forged),
                    ("email", &email),
                    ("password", PASSWORD),
                    ("fname", "A"),
                    ("lname", "B"),
                ],
            )
            .await;
        assert_eq!(location(&created), "/account?done=welcome", "{forged}");
    }
    // A valid one that has expired is ignored too.
    app.clock.advance(3601);
    let page = browser
        .page(&format!("/account/forgot?return={sealed}"))
        .await;
    assert!(!page.contains("name=\"return\""));
}

#[tokio::test]
async fn hostile_and_oversized_fields_are_refused_next_to_the_field() {
    let app = TestApp::spawn().await;
    let browser = Browser::new(&app);
    let page = browser.page("/account/signup").await;
    let long = "x".repeat(30_000);
    let secret = "my secret password <b>";
    let refused = browser
        .submit(
            "/account/signup",
            &page,
            None,
            &[
                ("email", "<script>alert(1)</script>"),
                ("password", secret),
                ("fname", &long),
                ("lname", "\u{7}bell"),
            ],
        )
        .await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = refused.text().await.unwrap();
    assert!(!html.contains("<script>alert") && html.contains("&lt;script&gt;"));
    assert!(
        !html.contains("my secret password"),
        "a password is never echoed"
    );
    for field in ["email", "fname", "lname"] {
        assert!(
            html.contains(&format!("id=\"signup-{field}-error\"")),
            "{field}"
        );
        assert!(
            html.contains(&format!("aria-describedby=\"signup-{field}-error")),
            "{field}"
        );
    }
    assert!(
        html.contains("must be an email address"),
        "the API's wording"
    );
    // A body over 64 KiB, a repeated field, another content type.
    let huge = "y".repeat(70 * 1024);
    let too_big = browser
        .submit("/account/signup", &page, None, &[("fname", &huge)])
        .await;
    assert_eq!(too_big.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let repeated = browser
        .submit(
            "/account/signup",
            &page,
            None,
            &[("email", "a@b.co"), ("email", "c@d.co")],
        )
        .await;
    assert_eq!(repeated.status(), StatusCode::BAD_REQUEST);
    let json = browser
        .http
        .post(app.url("/account/signup"))
        .json(&json!({"email": "a@b.co"}))
        .send()
        .await
        .unwrap();
    assert_eq!(json.status(), StatusCode::BAD_REQUEST);
    // A taken email reads like the API's 409.
    let email = unique_email("taken");
    assert_eq!(
        app.signup(&email, PASSWORD).await.status(),
        StatusCode::CREATED
    );
    let page = browser.page("/account/signup").await;
    let taken = browser
        .submit(
            "/account/signup",
            &page,
            None,
            &[
                ("email", &email),
                ("password", PASSWORD),
                ("fname", "A"),
                ("lname", "B"),
            ],
        )
        .await;
    assert_eq!(taken.status(), StatusCode::CONFLICT);
    assert!(
        taken
            .text()
            .await
            .unwrap()
            .contains("an account with this email already exists")
    );
    // An unknown action of a signed-in browser.
    let user = Browser::new(&app);
    assert_eq!(
        location(&sign_up(&user, &unique_email("act")).await),
        "/account?done=welcome"
    );
    let account = user.page("/account").await;
    let mut form = hidden_fields(&account, Some("signout"));
    form.retain(|(k, _)| k != "action");
    let csrf = form[0].1.clone();
    let unknown = user
        .post("/account", &[("csrf", csrf.as_str()), ("action", "x")])
        .await;
    assert_eq!(unknown.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn forgot_password_says_the_same_for_any_email_and_the_mailed_code_resets() {
    let app = TestApp::spawn().await;
    let user = app.user("forgot").await;
    let browser = Browser::new(&app);
    let stranger = unique_email("nobody");
    let mut answers = Vec::new();
    for email in [&user.email, &stranger] {
        let page = browser.page("/account/forgot").await;
        let sent = browser
            .submit("/account/forgot", &page, None, &[("email", email)])
            .await;
        assert_eq!(sent.status(), StatusCode::OK);
        answers.push(sent.text().await.unwrap().replace(email.as_str(), "EMAIL"));
    }
    assert_eq!(answers[0], answers[1], "no enumeration");
    let page = &answers[0];
    assert!(page.contains("autocomplete=\"one-time-code\""));

    let code = mailed_code(&app, &user.email, 1).await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let refused = browser
        .submit(
            "/account/reset",
            page,
            None,
            &[
                ("email", &user.email),
                ("otp", wrong),
                ("new_password", "another good password"),
            ],
        )
        .await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let html = refused.text().await.unwrap();
    assert!(
        html.contains("id=\"reset-otp-error\"")
            && html.contains("the code is wrong, expired or already used")
    );
    assert!(!html.contains(wrong) && !html.contains("another good password"));

    let reset = browser
        .submit(
            "/account/reset",
            page,
            None,
            &[
                ("email", &user.email),
                ("otp", &code),
                ("new_password", "another good password"),
            ],
        )
        .await;
    assert_eq!(location(&reset), "/account?done=reset");
    assert_eq!(
        app.login(&user.email, "another good password")
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        app.login(&user.email, PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn forgot_password_requests_share_the_api_budget() {
    let app = TestApp::spawn().await;
    let browser = Browser::new(&app);
    let email = unique_email("otp-budget");
    let mut last = StatusCode::OK;
    for _ in 0..20 {
        let status = app
            .post_json("/api/users/forgotpasswords", &json!({ "email": email }))
            .await
            .status();
        if status == StatusCode::TOO_MANY_REQUESTS {
            last = status;
            break;
        }
    }
    assert_eq!(
        last,
        StatusCode::TOO_MANY_REQUESTS,
        "the API's budget ran out"
    );
    let page = browser.page("/account/forgot").await;
    let throttled = browser
        .submit("/account/forgot", &page, None, &[("email", &email)])
        .await;
    assert_eq!(throttled.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(throttled.headers().contains_key("retry-after"));
}

#[tokio::test]
async fn a_token_store_outage_answers_a_503_page_and_recovers() {
    let redis = RedisServer::start(free_port());
    let url = redis.url.clone();
    let app = TestApp::spawn_with(move |c| {
        c.redis_url = Some(tessera::config::Secret::new(url));
    })
    .await;
    let browser = Browser::new(&app);
    let email = unique_email("outage");
    assert_eq!(
        location(&sign_up(&browser, &email).await),
        "/account?done=welcome"
    );
    let signin = Browser::new(&app);
    let login_page = signin.page("/account").await;

    redis.stop();
    let account = browser.get("/account").await;
    assert_eq!(account.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        account.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(account.text().await.unwrap().contains("unavailable"));
    let login = signin
        .submit(
            "/account",
            &login_page,
            Some("login"),
            &[("email", &email), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(login.status(), StatusCode::SERVICE_UNAVAILABLE);

    let _restarted = RedisServer::start(redis.port);
    let deadline = Instant::now() + Duration::from_secs(30);
    while browser.get("/account").await.status() != StatusCode::OK {
        assert!(Instant::now() < deadline, "the pages did not recover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_done_notice_is_a_fixed_text_never_the_query() {
    let app = TestApp::spawn().await;
    let browser = Browser::new(&app);
    let page = browser
        .page("/account?done=%3Cscript%3Ealert(1)%3C/script%3E")
        .await;
    assert!(!page.contains("<script>") && !page.contains("alert(1)"));
    assert!(!page.contains("role=\"status\""));
}
