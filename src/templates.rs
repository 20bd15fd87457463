//! Templates for mail and the HTML pages (`/authorize`, `/logout`, `/account`), compiled into the binary
//! from `templates/` so a deployment cannot lose them. One engine:
//! minijinja, which escapes HTML in `.html` templates automatically.

use minijinja::Environment;
use serde::Serialize;

/// Every template, by the path under `templates/`.
const TEMPLATES: &[(&str, &str)] = &[
    ("email/otp.txt", include_str!("../templates/email/otp.txt")),
    (
        "email/otp.html",
        include_str!("../templates/email/otp.html"),
    ),
    (
        "email/verify_email.txt",
        include_str!("../templates/email/verify_email.txt"),
    ),
    (
        "email/verify_email.html",
        include_str!("../templates/email/verify_email.html"),
    ),
    (
        "email/password_changed.txt",
        include_str!("../templates/email/password_changed.txt"),
    ),
    (
        "email/password_changed.html",
        include_str!("../templates/email/password_changed.html"),
    ),
    (
        "html/base.html",
        include_str!("../templates/html/base.html"),
    ),
    (
        "html/login.html",
        include_str!("../templates/html/login.html"),
    ),
    (
        "html/consent.html",
        include_str!("../templates/html/consent.html"),
    ),
    (
        "html/error.html",
        include_str!("../templates/html/error.html"),
    ),
    (
        "html/form_post.html",
        include_str!("../templates/html/form_post.html"),
    ),
    (
        "html/logout.html",
        include_str!("../templates/html/logout.html"),
    ),
    (
        "html/signed_out.html",
        include_str!("../templates/html/signed_out.html"),
    ),
    (
        "html/account/fields.html",
        include_str!("../templates/html/account/fields.html"),
    ),
    (
        "html/account/signup.html",
        include_str!("../templates/html/account/signup.html"),
    ),
    (
        "html/account/forgot.html",
        include_str!("../templates/html/account/forgot.html"),
    ),
    (
        "html/account/reset.html",
        include_str!("../templates/html/account/reset.html"),
    ),
    (
        "html/account/signin.html",
        include_str!("../templates/html/account/signin.html"),
    ),
    (
        "html/account/account.html",
        include_str!("../templates/html/account/account.html"),
    ),
];

/// The stylesheet of the HTML pages (served, never inlined, so the CSP can
/// forbid inline styles).
pub const STYLESHEET: &str = include_str!("../templates/html/style.css");

/// A template failed to render (a bug in a template, never user input).
#[derive(Debug, thiserror::Error)]
#[error("template {name}: {message}")]
pub struct TemplateError {
    pub name: String,
    pub message: String,
}

/// The loaded templates.
pub struct Templates {
    env: Environment<'static>,
}

impl Templates {
    pub fn load() -> Result<Self, TemplateError> {
        let mut env = Environment::new();
        for (name, source) in TEMPLATES {
            env.add_template(name, source).map_err(|e| TemplateError {
                name: (*name).to_owned(),
                message: e.to_string(),
            })?;
        }
        Ok(Self { env })
    }

    pub fn render(&self, name: &str, context: impl Serialize) -> Result<String, TemplateError> {
        self.env
            .get_template(name)
            .and_then(|t| t.render(context))
            .map_err(|e| TemplateError {
                name: name.to_owned(),
                message: e.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_renders_and_html_is_escaped() {
        let templates = Templates::load().unwrap();
        let html = templates
            .render(
                "email/otp.html",
                serde_json::json!({"product": "<Tessera>", "code": "123456", "minutes": 10}),
            )
            .unwrap();
        assert!(html.contains("123456") && html.contains("&lt;Tessera&gt;"));
        let text = templates
            .render(
                "email/password_changed.txt",
                serde_json::json!({"product": "Tessera"}),
            )
            .unwrap();
        assert!(text.contains("Tessera"));
    }

    #[test]
    fn pages_render_and_escape_what_they_echo() {
        let templates = Templates::load().unwrap();
        let scopes = serde_json::json!([{"name": "email", "label": "See your email address"}]);
        let params = serde_json::json!([["state", "\"><script>"]]);
        for page in ["html/login.html", "html/consent.html", "html/error.html"] {
            let html = templates
                .render(
                    page,
                    serde_json::json!({
                        "client_name": "<b>App</b>", "scopes": scopes, "params": params,
                        "csrf": "t", "error": "e", "email": "a@b.co", "message": "m"
                    }),
                )
                .unwrap();
            assert!(
                !html.contains("<script>") && !html.contains("<b>App"),
                "{page}: {html}"
            );
        }
    }

    #[test]
    fn account_pages_put_errors_next_to_fields_and_escape_what_they_echo() {
        let templates = Templates::load().unwrap();
        let context = serde_json::json!({
            "csrf": "t", "back": "sealed.mac", "sign_in": "/account", "notice": "n",
            "values": {"email": "\"><script>", "fname": "<b>x", "lname": "l", "gender": null},
            "errors": {"email": "must be an email address", "password": "too short"},
            "email": "a@b.co", "email_verified": false,
        });
        for (page, form) in [
            ("signup", "signup"),
            ("forgot", "forgot"),
            ("reset", "reset"),
            ("signin", "signin"),
        ] {
            let html = templates
                .render(&format!("html/account/{page}.html"), &context)
                .unwrap();
            assert!(
                !html.contains("<script>") && !html.contains("<b>x"),
                "{page}: {html}"
            );
            assert!(
                html.contains(&format!("aria-describedby=\"{form}-email-error\""))
                    && html.contains(&format!("id=\"{form}-email-error\"")),
                "{page}: {html}"
            );
        }
        let html = templates
            .render("html/account/account.html", &context)
            .unwrap();
        assert!(!html.contains("<b>x") && html.contains("&lt;b&gt;x"));
        assert_eq!(html.matches("<h1>").count(), 1, "{html}");
        let lists = serde_json::json!({
            "csrf": "t", "values": {}, "errors": {}, "email": "a@b.co",
            "sessions": [{"id": "f1", "client_name": "<App>", "created": "c", "last_used": "l", "current": true}],
            "apps": [{"client_id": "c1", "client_name": "<App>", "scopes": "email", "granted": "g"}],
        });
        let html = templates
            .render("html/account/account.html", &lists)
            .unwrap();
        assert!(!html.contains("<App>") && html.contains("this browser"));
    }
}
