//! `/api/users/*`: every happy path and every error status docs/api.md names.

use reqwest::StatusCode;
use serde_json::json;

use crate::common::{
    Backend, PASSWORD, TestApp, assert_invalid_token, assert_problem, body, unique_email,
};

async fn signup_returns_the_user_without_the_hash(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let email = unique_email("Signup");
    let response = app
        .post_json(
            "/api/users/signup",
            &json!({
                "email": format!("  {}  ", email.to_uppercase()),
                "password": PASSWORD,
                "fname": "Zoë",
                "lname": "Łukasz",
                "gender": "female",
                "mobile": "+14155552671"
            }),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let user = body(response).await;
    assert_eq!(user["email"], email.to_lowercase());
    assert_eq!(user["fname"], "Zoë");
    assert_eq!(user["lname"], "Łukasz");
    assert_eq!(user["gender"], "female");
    assert_eq!(user["mobile"], "+14155552671");
    assert_eq!(user["role"], "user");
    assert_eq!(user["id"].as_str().unwrap().len(), 24);
    for key in ["created_at", "updated_at"] {
        let stamp = user[key].as_str().unwrap();
        time::OffsetDateTime::parse(stamp, &time::format_description::well_known::Rfc3339)
            .expect("RFC 3339");
    }
    let text = user.to_string();
    assert!(
        !text.contains("$2b$") && !text.contains("password"),
        "{text}"
    );
}

async fn duplicate_email_is_409_whatever_the_case_or_spaces(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let email = unique_email("dup");
    assert_eq!(
        app.signup(&email, PASSWORD).await.status(),
        StatusCode::CREATED
    );
    let again = app
        .signup(&format!(" {} ", email.to_uppercase()), PASSWORD)
        .await;
    assert_problem(again, 409, "email_taken").await;
}

async fn signup_validation_names_each_bad_field(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let cases = [
        (
            json!({"email": "not-an-email", "password": PASSWORD, "fname": "a", "lname": "b"}),
            "email",
        ),
        (
            json!({"email": unique_email("v"), "password": "short", "fname": "a", "lname": "b"}),
            "password",
        ),
        (
            json!({"email": unique_email("v"), "password": "x".repeat(73), "fname": "a", "lname": "b"}),
            "password",
        ),
        // 25 three-byte characters: 25 characters but 75 bytes.
        (
            json!({"email": unique_email("v"), "password": "€".repeat(25), "fname": "a", "lname": "b"}),
            "password",
        ),
        (
            json!({"email": unique_email("v"), "password": PASSWORD, "fname": " ", "lname": "b"}),
            "fname",
        ),
        (
            json!({"email": unique_email("v"), "password": PASSWORD, "fname": "a", "lname": "b", "mobile": "0123"}),
            "mobile",
        ),
        (
            json!({"email": unique_email("v"), "password": PASSWORD, "fname": "a", "lname": "b", "gender": "x".repeat(33)}),
            "gender",
        ),
        (
            json!({"email": unique_email("v"), "password": PASSWORD, "lname": "b"}),
            "fname",
        ),
        (
            json!({"email": unique_email("v"), "password": PASSWORD, "fname": "a", "lname": "b", "role": "admin"}),
            "role",
        ),
    ];
    for (request, field) in cases {
        let response = app.post_json("/api/users/signup", &request).await;
        let problem = assert_problem(response, 422, "validation_failed").await;
        assert!(problem["errors"][field].is_string(), "{field}: {problem}");
    }
}

async fn passwords_of_exactly_8_and_72_bytes_are_accepted(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    for password in ["12345678".to_owned(), "p".repeat(72), "€".repeat(24)] {
        let email = unique_email("len");
        assert_eq!(
            app.signup(&email, &password).await.status(),
            StatusCode::CREATED
        );
        assert_eq!(app.login(&email, &password).await.status(), StatusCode::OK);
    }
}

async fn login_returns_a_token_response_that_is_not_cached(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let email = unique_email("login");
    app.signup(&email, PASSWORD).await;
    let response = app
        .login(&format!(" {} ", email.to_uppercase()), PASSWORD)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(response.headers()["pragma"], "no-cache");
    let tokens = body(response).await;
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 900);
    assert_eq!(tokens["scope"], "account email openid phone profile");
    assert!(tokens["access_token"].as_str().unwrap().split('.').count() == 3);
    let refresh = tokens["refresh_token"].as_str().unwrap();
    assert!(refresh.starts_with("tsr_") && refresh.len() >= 4 + 43);
}

async fn unknown_email_and_wrong_password_fail_alike(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let email = unique_email("same");
    app.signup(&email, PASSWORD).await;
    let wrong = app.login(&email, "wrong password!").await;
    let unknown = app.login(&unique_email("nobody"), PASSWORD).await;
    let malformed = app.login("not an email", PASSWORD).await;
    let too_long = app
        .login(&email, &format!("{PASSWORD}{}", "x".repeat(80)))
        .await;
    let wrong = assert_problem(wrong, 401, "invalid_credentials").await;
    for other in [unknown, malformed, too_long] {
        assert_eq!(
            assert_problem(other, 401, "invalid_credentials").await,
            wrong
        );
    }
}

async fn me_returns_the_user_of_the_token(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let user = app.user("me").await;
    let response = app.get_auth("/api/users/me", &user.access_token).await;
    assert_eq!(response.status(), StatusCode::OK);
    let me = body(response).await;
    assert_eq!(me["id"], user.id);
    assert_eq!(me["email"], user.email);
}

async fn bearer_endpoints_refuse_missing_and_malformed_tokens(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    assert_invalid_token(app.get("/api/users/me").await).await;
    for header in [
        "Bearer",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "Bearer a.b",
        "Bearer a.b.c",
        "bearer ...",
    ] {
        let response = app
            .http
            .get(app.url("/api/users/me"))
            .header("authorization", header)
            .send()
            .await
            .unwrap();
        assert_invalid_token(response).await;
    }
    let response = app
        .put_json_auth("/api/users/updateusers", "garbage", &json!({"fname": "x"}))
        .await;
    assert_invalid_token(response).await;
}

async fn updateusers_changes_only_the_given_fields(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let user = app.user("profile").await;
    let response = app
        .put_json_auth(
            "/api/users/updateusers",
            &user.access_token,
            &json!({"fname": "  Ada ", "gender": "non-binary"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let updated = body(response).await;
    assert_eq!(updated["fname"], "Ada");
    assert_eq!(updated["lname"], "User");
    assert_eq!(updated["gender"], "non-binary");

    let response = app
        .put_json_auth("/api/users/updateusers", &user.access_token, &json!({}))
        .await;
    assert_eq!(body(response).await["fname"], "Ada");

    let response = app
        .put_json_auth(
            "/api/users/updateusers",
            &user.access_token,
            &json!({"lname": ""}),
        )
        .await;
    assert_problem(response, 422, "validation_failed").await;
    // Fields outside the profile (email, role) cannot be set here.
    let response = app
        .put_json_auth(
            "/api/users/updateusers",
            &user.access_token,
            &json!({"role": "admin"}),
        )
        .await;
    let problem = assert_problem(response, 422, "validation_failed").await;
    assert_eq!(problem["errors"]["role"], "is not allowed");
}

async fn updatemobile_requires_e164(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let user = app.user("mobile").await;
    let response = app
        .put_json_auth(
            "/api/users/updatemobile",
            &user.access_token,
            &json!({"mobile": "+447911123456"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body(response).await["mobile"], "+447911123456");
    for bad in [
        json!({"mobile": "07911 123456"}),
        json!({"mobile": 447911123456_u64}),
        json!({}),
    ] {
        let response = app
            .put_json_auth("/api/users/updatemobile", &user.access_token, &bad)
            .await;
        let problem = assert_problem(response, 422, "validation_failed").await;
        assert!(problem["errors"]["mobile"].is_string(), "{problem}");
    }
}

async fn updatepassword_checks_the_old_password_and_logs_out_everywhere(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let user = app.user("password").await;
    let second_session = body(app.login(&user.email, PASSWORD).await).await;
    let second_access = second_session["access_token"].as_str().unwrap();

    let wrong = app
        .put_json_auth(
            "/api/users/updatepassword",
            &user.access_token,
            &json!({"old_password": "not my password", "new_password": "a new password"}),
        )
        .await;
    assert_problem(wrong, 403, "wrong_password").await;

    let short = app
        .put_json_auth(
            "/api/users/updatepassword",
            &user.access_token,
            &json!({"old_password": PASSWORD, "new_password": "short"}),
        )
        .await;
    let problem = assert_problem(short, 422, "validation_failed").await;
    assert!(problem["errors"]["new_password"].is_string());

    let changed = app
        .put_json_auth(
            "/api/users/updatepassword",
            &user.access_token,
            &json!({"old_password": PASSWORD, "new_password": "a new password"}),
        )
        .await;
    assert_eq!(changed.status(), StatusCode::OK);

    // Every outstanding access token of the user is dead now.
    assert_invalid_token(app.get_auth("/api/users/me", &user.access_token).await).await;
    assert_invalid_token(app.get_auth("/api/users/me", second_access).await).await;
    // The old password no longer works; the new one does, and its token lives.
    assert_problem(
        app.login(&user.email, PASSWORD).await,
        401,
        "invalid_credentials",
    )
    .await;
    let fresh = body(app.login(&user.email, "a new password").await).await;
    let me = app
        .get_auth("/api/users/me", fresh["access_token"].as_str().unwrap())
        .await;
    assert_eq!(me.status(), StatusCode::OK);
}

async fn login_rehashes_when_the_cost_changes(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let email = unique_email("rehash");
    app.signup(&email, PASSWORD).await;
    // Same data, higher configured cost: the next login rehashes at cost 5.
    let mut app = app;
    app.config.bcrypt_cost = 5;
    let app = app.restart().await;
    assert_eq!(app.login(&email, PASSWORD).await.status(), StatusCode::OK);
    let stored = app
        .state
        .user_store
        .user_by_email(&email)
        .await
        .unwrap()
        .unwrap();
    assert!(
        stored.password_hash.starts_with("$2b$05$"),
        "rehashed at cost 5"
    );
    assert_eq!(app.login(&email, PASSWORD).await.status(), StatusCode::OK);
}

crate::on_every_backend!(
    signup_returns_the_user_without_the_hash,
    duplicate_email_is_409_whatever_the_case_or_spaces,
    signup_validation_names_each_bad_field,
    passwords_of_exactly_8_and_72_bytes_are_accepted,
    login_returns_a_token_response_that_is_not_cached,
    unknown_email_and_wrong_password_fail_alike,
    me_returns_the_user_of_the_token,
    bearer_endpoints_refuse_missing_and_malformed_tokens,
    updateusers_changes_only_the_given_fields,
    updatemobile_requires_e164,
    updatepassword_checks_the_old_password_and_logs_out_everywhere,
    login_rehashes_when_the_cost_changes,
);

#[tokio::test]
async fn repeated_login_failures_lock_the_account_alike_for_unknown_emails() {
    let app = TestApp::spawn().await;
    let email = unique_email("locked");
    app.signup(&email, PASSWORD).await;
    let nobody = unique_email("nobody");
    for target in [&email, &nobody] {
        for _ in 0..10 {
            assert_problem(
                app.login(target, "wrong password").await,
                401,
                "invalid_credentials",
            )
            .await;
        }
        // Locked: even the right password is refused until the window ends.
        let locked = app.login(target, PASSWORD).await;
        let retry: u64 = locked.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=900).contains(&retry), "{retry}");
        assert_problem(locked, 429, "too_many_requests").await;
    }
    app.clock.advance(900);
    assert_eq!(app.login(&email, PASSWORD).await.status(), StatusCode::OK);
}
