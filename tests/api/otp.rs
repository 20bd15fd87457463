//! Forgot password by mailed code, and reset with it, over a real SMTP
//! server (aiosmtpd) on both token stores.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use tessera::config::{Config, SmtpSecurity};

use crate::common::{
    Backend, PASSWORD, SmtpServer, TestApp, assert_invalid_token, assert_oauth_error,
    assert_problem, body, otp_in, smtp_server, unique_email,
};
use crate::on_every_backend;

/// How long a test waits for a background delivery on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(60);

fn with_smtp(server: &SmtpServer) -> impl FnOnce(&mut Config) {
    let port = server.port;
    move |c: &mut Config| {
        c.smtp_host = Some("127.0.0.1".into());
        c.smtp_port = port;
        c.smtp_security = SmtpSecurity::None;
    }
}

async fn forgot(app: &TestApp, email: &str) -> reqwest::Response {
    app.post_json("/api/users/forgotpasswords", &json!({"email": email}))
        .await
}

async fn reset(app: &TestApp, email: &str, otp: &str, new_password: &str) -> reqwest::Response {
    app.post_json(
        "/api/users/resetpasswordotps",
        &json!({"email": email, "otp": otp, "new_password": new_password}),
    )
    .await
}

async fn reset_with_a_mailed_code(backend: Backend) {
    let smtp = smtp_server();
    let app = TestApp::spawn_on_with(backend, with_smtp(smtp)).await;
    let user = app.user("reset").await;

    let response = forgot(&app, &user.email).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let message = smtp.wait_for(&user.email, 1).await.remove(0);
    assert!(
        message.contains("multipart/alternative"),
        "text and HTML parts"
    );
    assert!(message.contains("text/plain") && message.contains("text/html"));
    assert!(message.contains("10 minutes") && message.contains("ignore"));
    let code = otp_in(&message);

    assert_eq!(
        reset(&app, &user.email, &code, "a brand new password")
            .await
            .status(),
        StatusCode::OK
    );
    // The new password works, the old does not, and every old session is dead.
    assert_eq!(
        app.login(&user.email, "a brand new password")
            .await
            .status(),
        StatusCode::OK
    );
    assert_problem(
        app.login(&user.email, PASSWORD).await,
        401,
        "invalid_credentials",
    )
    .await;
    assert_invalid_token(app.get_auth("/api/users/me", &user.access_token).await).await;
    let refresh = app
        .post_form(
            "/token",
            None,
            &[
                ("grant_type", "refresh_token"),
                ("client_id", "tessera"),
                ("refresh_token", &user.refresh_token),
            ],
        )
        .await;
    assert_oauth_error(refresh, 400, "invalid_grant").await;
    // The code is single use, and a notice of the change was mailed.
    assert_problem(
        reset(&app, &user.email, &code, "yet another password").await,
        400,
        "invalid_otp",
    )
    .await;
    let messages = smtp.wait_for(&user.email, 2).await;
    assert!(messages[1].contains("password was changed"));
}

async fn five_wrong_tries_burn_the_code(backend: Backend) {
    let smtp = smtp_server();
    let app = TestApp::spawn_on_with(backend, with_smtp(smtp)).await;
    let user = app.user("burn").await;
    forgot(&app, &user.email).await;
    let code = otp_in(&smtp.wait_for(&user.email, 1).await[0]);
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for _ in 0..5 {
        assert_problem(
            reset(&app, &user.email, wrong, "a new password!").await,
            400,
            "invalid_otp",
        )
        .await;
    }
    assert_problem(
        reset(&app, &user.email, &code, "a new password!").await,
        400,
        "invalid_otp",
    )
    .await;
    assert_eq!(
        app.login(&user.email, PASSWORD).await.status(),
        StatusCode::OK
    );
}

async fn codes_expire_and_a_new_request_replaces_the_old(backend: Backend) {
    let smtp = smtp_server();
    let app = TestApp::spawn_on_with(backend, with_smtp(smtp)).await;
    let user = app.user("expire").await;
    forgot(&app, &user.email).await;
    let first = otp_in(&smtp.wait_for(&user.email, 1).await[0]);
    app.clock.advance(10 * 60 + 1);
    assert_problem(
        reset(&app, &user.email, &first, "a new password!").await,
        400,
        "invalid_otp",
    )
    .await;

    forgot(&app, &user.email).await;
    let second = otp_in(&smtp.wait_for(&user.email, 2).await[1]);
    app.clock.advance(61);
    forgot(&app, &user.email).await;
    let third = otp_in(&smtp.wait_for(&user.email, 3).await[2]);
    if second != third {
        assert_problem(
            reset(&app, &user.email, &second, "a new password!").await,
            400,
            "invalid_otp",
        )
        .await;
    }
    assert_eq!(
        reset(&app, &user.email, &third, "a new password!")
            .await
            .status(),
        StatusCode::OK
    );
}

on_every_backend!(
    reset_with_a_mailed_code,
    five_wrong_tries_burn_the_code,
    codes_expire_and_a_new_request_replaces_the_old,
);

#[tokio::test]
async fn unknown_emails_get_the_identical_answer_and_no_mail() {
    let smtp = smtp_server();
    let app = TestApp::spawn_with(with_smtp(smtp)).await;
    let user = app.user("known").await;
    let later = app.user("known-later").await;
    let known = forgot(&app, &user.email).await;
    let nobody = unique_email("nobody");
    let unknown = forgot(&app, &nobody).await;
    assert_eq!(known.status(), StatusCode::ACCEPTED);
    assert_eq!(unknown.status(), StatusCode::ACCEPTED);
    assert_eq!(body(known).await, body(unknown).await);
    // A positive signal instead of a pause: a request made after the
    // unknown one does mail, and once its mail (and the first) has been
    // delivered, the app has made exactly those two deliveries. A message
    // for the unknown email would have been queued before the later one.
    assert_eq!(
        forgot(&app, &later.email).await.status(),
        StatusCode::ACCEPTED
    );
    smtp.wait_for(&user.email, 1).await;
    smtp.wait_for(&later.email, 1).await;
    let mailer = &app.state.mailer;
    let deadline = Instant::now() + PATIENCE;
    while mailer.sent() + mailer.failures() < 2 {
        assert!(Instant::now() < deadline, "the two deliveries are counted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!((mailer.sent(), mailer.failures()), (2, 0));
    assert!(smtp.messages_to(&nobody).is_empty());
    assert_problem(
        reset(&app, &nobody, "123456", "a new password!").await,
        400,
        "invalid_otp",
    )
    .await;
}

#[tokio::test]
async fn requests_are_rate_limited_alike_for_every_email() {
    let app = TestApp::spawn().await;
    // The limits count in fixed windows (a minute, an hour) of the app's
    // clock, and the test moves that clock by 305 s: started at a random
    // time it would cross an hour boundary one run in twelve and see the
    // hourly count start afresh. Start just past an hour boundary instead.
    let into_hour = app.clock.now().rem_euclid(3600);
    app.clock.advance(3600 - into_hour + 1);
    let user = app.user("limit").await;
    let nobody = unique_email("nobody");
    for email in [user.email.as_str(), nobody.as_str()] {
        assert_eq!(forgot(&app, email).await.status(), StatusCode::ACCEPTED);
        let limited = forgot(&app, email).await;
        let retry: u64 = limited.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&retry), "{retry}");
        assert_problem(limited, 429, "too_many_requests").await;
    }
    // Five an hour per email, even when spaced out.
    for _ in 0..4 {
        app.clock.advance(61);
        assert_eq!(
            forgot(&app, &user.email).await.status(),
            StatusCode::ACCEPTED
        );
    }
    app.clock.advance(61);
    assert_eq!(
        forgot(&app, &user.email).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn smtp_down_still_answers_202_and_counts_the_failure() {
    let dead_port = crate::common::free_port();
    let app = TestApp::spawn_with(move |c| {
        c.smtp_host = Some("127.0.0.1".into());
        c.smtp_port = dead_port;
        c.smtp_security = SmtpSecurity::None;
    })
    .await;
    let user = app.user("smtp-down").await;
    assert_eq!(app.state.mailer.failures(), 0);
    assert_eq!(
        forgot(&app, &user.email).await.status(),
        StatusCode::ACCEPTED
    );
    let deadline = Instant::now() + PATIENCE;
    while app.state.mailer.failures() == 0 {
        assert!(
            Instant::now() < deadline,
            "the failed delivery was not counted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        (app.state.mailer.failures(), app.state.mailer.sent()),
        (1, 0)
    );
}

#[tokio::test]
async fn without_smtp_messages_are_written_as_eml_files() {
    let app = TestApp::spawn().await;
    let user = app.user("eml").await;
    assert_eq!(
        forgot(&app, &user.email).await.status(),
        StatusCode::ACCEPTED
    );
    let folder = app.config.data_dir.join("mail");
    // The mailer counts a delivery once the file is written in full.
    let deadline = Instant::now() + PATIENCE;
    while app.state.mailer.sent() == 0 {
        assert!(
            Instant::now() < deadline,
            "no .eml file in {}",
            folder.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let files: Vec<_> = std::fs::read_dir(&folder)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let code = otp_in(&std::fs::read_to_string(&files[0]).unwrap());
    assert_eq!(
        reset(&app, &user.email, &code, "a new password!")
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn malformed_otp_requests() {
    let app = TestApp::spawn().await;
    let user = app.user("otp-bad").await;
    assert_problem(forgot(&app, "not-an-email").await, 422, "validation_failed").await;
    for code in ["12345", "1234567", "abcdef", "12 456", ""] {
        assert_problem(
            reset(&app, &user.email, code, "a new password!").await,
            400,
            "invalid_otp",
        )
        .await;
    }
    let short = reset(&app, &user.email, "123456", "short").await;
    let problem = assert_problem(short, 422, "validation_failed").await;
    assert!(problem["errors"]["new_password"].is_string());
    let missing = app
        .post_json(
            "/api/users/resetpasswordotps",
            &json!({"email": user.email}),
        )
        .await;
    assert_problem(missing, 422, "validation_failed").await;
}
