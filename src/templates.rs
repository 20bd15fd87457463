//! Templates for mail (and, later, HTML pages), compiled into the binary
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
        "email/password_changed.txt",
        include_str!("../templates/email/password_changed.txt"),
    ),
    (
        "email/password_changed.html",
        include_str!("../templates/email/password_changed.html"),
    ),
];

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
}
