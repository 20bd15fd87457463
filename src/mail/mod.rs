//! Outgoing mail: SMTP through lettre, or `.eml` files in the data dir when
//! no SMTP host is configured. Sending never blocks a response: messages go
//! out on a background task with a bounded timeout, and failures are logged
//! (without the message) and counted.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::json;

use crate::config::{Config, ConfigError, SMTP_CREDENTIALS, SmtpSecurity};
use crate::templates::Templates;

/// The product name mail speaks with.
pub const PRODUCT: &str = "Tessera";

/// Longest a single delivery may take before it counts as failed.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// What the domain wants said to a user.
#[derive(Clone, PartialEq, Eq)]
pub enum Notice {
    /// A password-reset one-time code.
    Otp { code: String, minutes: u64 },
    /// An email-verification one-time code.
    VerifyEmail { code: String, minutes: u64 },
    /// "Your password was changed".
    PasswordChanged,
}

impl std::fmt::Debug for Notice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Notice::Otp { minutes, .. } => write!(f, "Otp(***, {minutes} min)"),
            Notice::VerifyEmail { minutes, .. } => write!(f, "VerifyEmail(***, {minutes} min)"),
            Notice::PasswordChanged => f.write_str("PasswordChanged"),
        }
    }
}

/// Where the domain drops notices. Implementations return at once.
pub trait Outbox: Send + Sync {
    fn send(&self, to: &str, notice: Notice);
}

enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Folder(AsyncFileTransport<Tokio1Executor>, PathBuf),
}

/// Renders and delivers notices.
pub struct Mailer {
    transport: Transport,
    from: Mailbox,
    templates: Arc<Templates>,
    failures: AtomicU64,
    sent: AtomicU64,
}

impl Mailer {
    /// SMTP when `TESSERA_SMTP_HOST` is set, else `.eml` files under `<data dir>/mail`.
    pub fn from_config(config: &Config, templates: Arc<Templates>) -> Result<Self, ConfigError> {
        let from: Mailbox = config
            .mail_from
            .parse()
            .map_err(|_| ConfigError("TESSERA_MAIL_FROM: not a valid mailbox".into()))?;
        let transport = match &config.smtp_host {
            Some(host) => Transport::Smtp(smtp_transport(config, host)?),
            None => {
                let dir = config.data_dir.join("mail");
                crate::files::create_private_dir(&dir).map_err(|e| {
                    ConfigError(format!(
                        "TESSERA_DATA_DIR: cannot create {}: {e}",
                        dir.display()
                    ))
                })?;
                Transport::Folder(AsyncFileTransport::new(&dir), dir)
            }
        };
        Ok(Self {
            transport,
            from,
            templates,
            failures: AtomicU64::new(0),
            sent: AtomicU64::new(0),
        })
    }

    /// Deliveries that failed or timed out since start.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Deliveries that succeeded since start.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    fn build(&self, to: &str, notice: &Notice) -> Result<Message, String> {
        let to: Mailbox = to.parse().map_err(|_| "invalid recipient".to_owned())?;
        let (subject, template, context) = match notice {
            Notice::Otp { code, minutes } => (
                format!("{PRODUCT}: your password reset code"),
                "otp",
                json!({"product": PRODUCT, "code": code, "minutes": minutes}),
            ),
            Notice::VerifyEmail { code, minutes } => (
                format!("{PRODUCT}: your email verification code"),
                "verify_email",
                json!({"product": PRODUCT, "code": code, "minutes": minutes}),
            ),
            Notice::PasswordChanged => (
                format!("{PRODUCT}: your password was changed"),
                "password_changed",
                json!({"product": PRODUCT}),
            ),
        };
        let text = self
            .templates
            .render(&format!("email/{template}.txt"), &context)
            .map_err(|e| e.to_string())?;
        let html = self
            .templates
            .render(&format!("email/{template}.html"), &context)
            .map_err(|e| e.to_string())?;
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .multipart(MultiPart::alternative_plain_html(text, html))
            .map_err(|e| e.to_string())
    }

    /// Delivers one notice now (the background task calls this).
    pub async fn deliver(&self, to: &str, notice: &Notice) -> Result<(), String> {
        let kind = match notice {
            Notice::Otp { .. } => "otp",
            Notice::VerifyEmail { .. } => "verify_email",
            Notice::PasswordChanged => "password_changed",
        };
        let message = match self.build(to, notice) {
            Ok(message) => message,
            Err(error) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("tessera_mail_failures_total").increment(1);
                tracing::error!(kind, error = %error, "mail could not be built");
                return Err(error);
            }
        };
        let outcome = tokio::time::timeout(SEND_TIMEOUT, async {
            match &self.transport {
                Transport::Smtp(smtp) => smtp
                    .send(message)
                    .await
                    .map(|_| None)
                    .map_err(|e| e.to_string()),
                Transport::Folder(folder, dir) => folder
                    .send(message)
                    .await
                    .map(|id| Some(dir.join(format!("{id}.eml"))))
                    .map_err(|e| e.to_string()),
            }
        })
        .await
        .unwrap_or_else(|_| Err("timed out".to_owned()));
        match outcome {
            Ok(Some(path)) => {
                // The dir is private already; the file is too, in case it is copied out.
                if let Err(e) = crate::files::restrict_file(&path) {
                    tracing::warn!(path = %path.display(), error = %e, "cannot make the mail file private (mode 0600)");
                }
                self.sent.fetch_add(1, Ordering::Relaxed);
                // The path, never the content: the message may hold a code.
                tracing::info!(kind, path = %path.display(), "mail written to the mail folder");
                Ok(())
            }
            Ok(None) => {
                self.sent.fetch_add(1, Ordering::Relaxed);
                tracing::info!(kind, "mail sent");
                Ok(())
            }
            Err(error) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("tessera_mail_failures_total").increment(1);
                tracing::warn!(kind, error = %error, "mail delivery failed");
                Err(error)
            }
        }
    }
}

/// Sends on a background task so the API answer never waits for SMTP.
impl Outbox for Arc<Mailer> {
    fn send(&self, to: &str, notice: Notice) {
        let (mailer, to) = (Arc::clone(self), to.to_owned());
        tokio::spawn(async move {
            let _ = mailer.deliver(&to, &notice).await;
        });
    }
}

fn smtp_transport(
    config: &Config,
    host: &str,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, ConfigError> {
    let invalid =
        |e: lettre::transport::smtp::Error| ConfigError(format!("TESSERA_SMTP_HOST: {e}"));
    let builder = match config.smtp_security {
        SmtpSecurity::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
        SmtpSecurity::Starttls => {
            AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host).map_err(invalid)?
        }
        SmtpSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host).map_err(invalid)?,
    };
    let mut builder = builder.port(config.smtp_port).timeout(Some(SEND_TIMEOUT));
    match (&config.smtp_username, &config.smtp_password) {
        (Some(username), Some(password)) => {
            builder = builder.credentials(Credentials::new(
                username.clone(),
                password.expose().to_owned(),
            ));
        }
        (None, None) => {}
        (Some(_), None) | (None, Some(_)) => return Err(ConfigError(SMTP_CREDENTIALS.into())),
    }
    Ok(builder.build())
}
