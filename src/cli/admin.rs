//! The operator's commands: `users`, `clients` and `events`, printing
//! tables or (`--json`) what the admin API answers.

use clap::Subcommand;

use crate::clock::Clock;
use crate::config::Config;
use crate::domain::DomainError;
use crate::domain::admin::{EventListing, UserListing};
use crate::domain::audit::Actor;
use crate::domain::clients::{ClientPatch, DEFAULT_USER_CLIENT_SCOPES, NewClient};
use crate::http::admin::ClientView;
use crate::http::admin::events::EventView;
use crate::http::admin::users::AdminUserView;
use crate::{App, StartError};

#[derive(Debug, Subcommand)]
pub enum ClientsCommand {
    /// Register a client; its secret is printed once.
    Create {
        #[arg(long)]
        name: String,
        /// A public client (no secret; PKCE required).
        #[arg(long)]
        public: bool,
        /// A first-party client (skips the consent page).
        #[arg(long)]
        first_party: bool,
        /// Allowed grant types: authorization_code, refresh_token, client_credentials.
        #[arg(long = "grant", required = true)]
        grants: Vec<String>,
        /// Registered redirect URIs (exact match).
        #[arg(long = "redirect-uri")]
        redirect_uris: Vec<String>,
        /// Scopes the client may request (repeat for several). Default for
        /// clients with only user grants (authorization_code, refresh_token):
        /// `email profile`, what the user API needs, as for the built-in
        /// client. Required with client_credentials: a client's own tokens
        /// carry only the scopes named here, and no default fits every API.
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// Access-token lifetime for this client, seconds.
        #[arg(long)]
        access_token_ttl: Option<u64>,
        /// Refresh-token idle lifetime for this client, seconds.
        #[arg(long)]
        refresh_token_ttl: Option<u64>,
        /// Where `/logout` may send the browser back to (exact match; repeat for several).
        #[arg(long = "post-logout-redirect-uri")]
        post_logout_redirect_uris: Vec<String>,
        /// Where a back-channel `logout_token` is POSTed when a session ends.
        #[arg(long = "backchannel-logout-uri")]
        backchannel_logout_uri: Option<String>,
        /// Every access token of the client must be DPoP-bound (RFC 9449 §5.2).
        #[arg(long)]
        dpop_bound_access_tokens: bool,
        /// The client must push its authorization requests to `/par` (RFC 9126 §6).
        #[arg(long = "require-par")]
        require_par: bool,
        /// Print `{"client_id", "client_secret"}` as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List clients.
    List {
        /// Print the clients as a JSON array (as the admin API shows them).
        #[arg(long)]
        json: bool,
    },
    /// Show one client.
    Show { client_id: String },
    /// Delete a client; its refresh families are revoked.
    Delete { client_id: String },
    /// Change a client's settings (the rules of `create` apply to the result).
    Update {
        client_id: String,
        #[arg(long)]
        name: Option<String>,
        /// Replaces the redirect URIs (repeat for several).
        #[arg(long = "redirect-uri")]
        redirect_uris: Vec<String>,
        /// Replaces the post-logout redirect URIs (repeat for several).
        #[arg(long = "post-logout-redirect-uri")]
        post_logout_redirect_uris: Vec<String>,
        #[arg(
            long = "backchannel-logout-uri",
            conflicts_with = "no_backchannel_logout_uri"
        )]
        backchannel_logout_uri: Option<String>,
        /// Removes the back-channel logout URI.
        #[arg(long)]
        no_backchannel_logout_uri: bool,
        /// Replaces the scopes (repeat for several).
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// Replaces the grant types (repeat for several).
        #[arg(long = "grant")]
        grants: Vec<String>,
        #[arg(long)]
        access_token_ttl: Option<u64>,
        /// Requires DPoP-bound access tokens (RFC 9449 §5.2).
        #[arg(long, conflicts_with = "no_dpop_bound_access_tokens")]
        dpop_bound_access_tokens: bool,
        /// Stops requiring DPoP-bound access tokens.
        #[arg(long)]
        no_dpop_bound_access_tokens: bool,
        /// Requires pushed authorization requests (RFC 9126 §6).
        #[arg(long = "require-par", conflicts_with = "no_require_par")]
        require_par: bool,
        /// Stops requiring pushed authorization requests.
        #[arg(long = "no-require-par")]
        no_require_par: bool,
        /// Print the client as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Give a confidential client a new secret, printed once; the old one
    /// keeps working `--grace` seconds (default 0, at most 30 days).
    RotateSecret {
        client_id: String,
        #[arg(long, default_value_t = 0)]
        grace: u64,
        /// Print `{"client_id", "client_secret"}` as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Give a user a role, e.g. `tessera users set-role alice@example.com admin`.
    SetRole { email: String, role: String },
    /// List users in email order, one page at a time.
    List {
        /// Email prefix.
        #[arg(long)]
        q: Option<String>,
        /// 1 to 100 (default 50).
        #[arg(long)]
        limit: Option<u32>,
        /// `next_cursor` of the previous page.
        #[arg(long)]
        cursor: Option<String>,
        /// Print `{items, next_cursor}` as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Disable a user: every session ends, and sign-in is refused.
    Disable { email: String },
    /// Enable a disabled user.
    Enable { email: String },
    /// Delete a user and every token, consent, code and session of theirs.
    Delete { email: String },
}

/// `tessera events`: the filters of `GET /api/admin/events`.
#[derive(Debug, clap::Args)]
pub struct EventsArgs {
    #[arg(long)]
    user_id: Option<String>,
    #[arg(long)]
    client_id: Option<String>,
    /// An event type, e.g. `login_failed`.
    #[arg(long = "type")]
    kind: Option<String>,
    /// RFC 3339 time: only events at or after it.
    #[arg(long)]
    since: Option<String>,
    /// 1 to 100 (default 50).
    #[arg(long)]
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[arg(long)]
    cursor: Option<String>,
    /// Print `{items, next_cursor}` as JSON.
    #[arg(long)]
    json: bool,
}

/// A domain error as the CLI reports it: field errors spelled out.
fn describe(error: DomainError) -> String {
    match error {
        DomainError::Validation(errors) => errors
            .iter()
            .map(|(field, why)| format!("{field} {why}"))
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    }
}

pub(super) async fn users(config: Config, command: UsersCommand) -> Result<(), StartError> {
    let app = App::build(config, Clock::system()).await?;
    let admin = &app.state.admin;
    let failed = |e: DomainError| StartError::Users(describe(e));
    match command {
        UsersCommand::SetRole { email, role } => {
            admin
                .set_role_by_email(&email, &role)
                .await
                .map_err(StartError::SetRole)?;
            println!("{email}: role set to {role}");
        }
        UsersCommand::List {
            q,
            limit,
            cursor,
            json,
        } => {
            let page = admin
                .list_users(&UserListing {
                    q,
                    limit: limit.map(|l| l.to_string()),
                    cursor,
                })
                .await
                .map_err(failed)?;
            let next = page.next_cursor.clone();
            let items: Vec<AdminUserView> =
                page.items.into_iter().map(AdminUserView::from).collect();
            if json {
                println!(
                    "{}",
                    serde_json::json!({"items": items, "next_cursor": next})
                );
            } else {
                println!("ID	EMAIL	ROLE	STATE");
                for u in &items {
                    let state = if u.disabled { "disabled" } else { "active" };
                    println!("{}	{}	{}	{state}", u.id, u.email, u.role);
                }
                if let Some(next) = next {
                    println!("(more: --cursor {next})");
                }
            }
        }
        UsersCommand::Disable { email } => set_disabled(admin, &email, true).await?,
        UsersCommand::Enable { email } => set_disabled(admin, &email, false).await?,
        UsersCommand::Delete { email } => {
            let normalised = email.trim().to_lowercase();
            let user = app
                .state
                .user_store
                .user_by_email(&normalised)
                .await
                .map_err(|e| failed(e.into()))?
                .ok_or_else(|| StartError::Users(format!("{normalised}: no such user")))?;
            app.state
                .account
                .delete_user(&user.id, crate::domain::audit::Actor::Cli)
                .await
                .map_err(failed)?;
            println!("{normalised}: deleted; every session ended");
        }
    }
    Ok(())
}

async fn set_disabled(
    admin: &crate::domain::admin::AdminService,
    email: &str,
    disabled: bool,
) -> Result<(), StartError> {
    let user = admin
        .set_disabled_by_email(email, disabled)
        .await
        .map_err(|e| StartError::Users(describe(e)))?;
    let state = if user.disabled {
        "disabled; every session ended"
    } else {
        "enabled"
    };
    println!("{}: {state}", user.email);
    Ok(())
}

pub(super) async fn events(config: Config, args: EventsArgs) -> Result<(), StartError> {
    let app = App::build(config, Clock::system()).await?;
    let page = app
        .state
        .admin
        .events(&EventListing {
            user_id: args.user_id,
            client_id: args.client_id,
            kind: args.kind,
            since: args.since,
            limit: args.limit.map(|l| l.to_string()),
            cursor: args.cursor,
        })
        .await
        .map_err(|e| StartError::Events(describe(e)))?;
    let next = page.next_cursor.clone();
    let items: Vec<EventView> = page.items.into_iter().map(EventView::from).collect();
    if args.json {
        println!(
            "{}",
            serde_json::json!({"items": items, "next_cursor": next})
        );
        return Ok(());
    }
    println!("AT	TYPE	USER	CLIENT	IP	DETAIL");
    for e in &items {
        println!(
            "{}	{}	{}	{}	{}	{}",
            e.at,
            e.kind,
            e.user_id.as_deref().unwrap_or("-"),
            e.client_id.as_deref().unwrap_or("-"),
            e.ip.as_deref().unwrap_or("-"),
            e.detail
        );
    }
    if let Some(next) = next {
        println!("(more: --cursor {next})");
    }
    Ok(())
}

/// The scopes of `clients create`: as given, else `email profile` for a
/// client that only acts for users; a client_credentials client must name
/// its scopes.
pub(super) fn scopes_or_default(
    scopes: Vec<String>,
    grants: &[String],
) -> Result<Vec<String>, StartError> {
    if !scopes.is_empty() {
        return Ok(scopes);
    }
    if grants.iter().any(|g| g == "client_credentials") {
        return Err(StartError::Clients(
            "a client_credentials client needs --scope: name the scopes its \
             tokens may carry (e.g. --scope reports.read)"
                .into(),
        ));
    }
    Ok(DEFAULT_USER_CLIENT_SCOPES
        .iter()
        .map(|s| (*s).to_owned())
        .collect())
}

/// A setting turned on (`--x`), off (`--no-x`) or left as it is (neither;
/// clap refuses both).
fn switched(on: bool, off: bool) -> Option<bool> {
    match (on, off) {
        (true, _) => Some(true),
        (false, true) => Some(false),
        (false, false) => None,
    }
}

pub(super) async fn clients(config: Config, command: ClientsCommand) -> Result<(), StartError> {
    let mut command = command;
    if let ClientsCommand::Create { scopes, grants, .. } = &mut command {
        // Settled (or refused) before any store is opened.
        *scopes = scopes_or_default(std::mem::take(scopes), grants)?;
    }
    let app = App::build(config, Clock::system()).await?;
    let clients = &app.state.clients;
    let failed = |e: &dyn std::fmt::Display| StartError::Clients(e.to_string());
    match command {
        ClientsCommand::Create {
            name,
            public,
            first_party,
            grants,
            redirect_uris,
            scopes,
            access_token_ttl,
            refresh_token_ttl,
            post_logout_redirect_uris,
            backchannel_logout_uri,
            dpop_bound_access_tokens,
            require_par,
            json,
        } => {
            let registered = clients
                .register(
                    NewClient {
                        name,
                        public,
                        first_party,
                        grant_types: grants,
                        redirect_uris,
                        scopes,
                        access_token_ttl,
                        refresh_token_ttl,
                        post_logout_redirect_uris,
                        backchannel_logout_uri,
                        dpop_bound_access_tokens,
                        require_pushed_authorization_requests: require_par,
                    },
                    Actor::Cli,
                )
                .await
                .map_err(|e| match e {
                    DomainError::Validation(errors) => {
                        failed(&format!("invalid client: {errors:?}"))
                    }
                    other => failed(&other),
                })?;
            let id = &registered.client.id;
            if json {
                let mut out = serde_json::json!({ "client_id": id });
                if let Some(secret) = &registered.secret {
                    out["client_secret"] = serde_json::json!(secret);
                }
                println!("{out}");
            } else {
                println!("client_id:     {id}");
                if let Some(secret) = &registered.secret {
                    println!("client_secret: {secret}   (shown once; store it now)");
                }
            }
        }
        ClientsCommand::List { json } => {
            let listed = clients.list().await.map_err(|e| failed(&e))?;
            if json {
                let views: Vec<ClientView> = listed.into_iter().map(ClientView::from).collect();
                println!("{}", serde_json::to_string(&views).map_err(|e| failed(&e))?);
                return Ok(());
            }
            for client in listed {
                let kind = if client.is_public() {
                    "public"
                } else {
                    "confidential"
                };
                println!(
                    "{}\t{}\t{}\t{}",
                    client.id,
                    kind,
                    client.grant_types.join(","),
                    client.name
                );
            }
        }
        ClientsCommand::Show { client_id } => {
            let client = clients
                .get(&client_id)
                .await
                .map_err(|e| failed(&e))?
                .ok_or_else(|| failed(&"no such client"))?;
            let view = ClientView::from(client);
            let view = serde_json::to_string_pretty(&view).map_err(|e| failed(&e))?;
            println!("{view}");
        }
        ClientsCommand::Delete { client_id } => {
            clients
                .delete(&client_id, Actor::Cli)
                .await
                .map_err(|e| failed(&describe(e)))?;
            println!("deleted {client_id}");
        }
        ClientsCommand::Update {
            client_id,
            name,
            redirect_uris,
            post_logout_redirect_uris,
            backchannel_logout_uri,
            no_backchannel_logout_uri,
            scopes,
            grants,
            access_token_ttl,
            dpop_bound_access_tokens,
            no_dpop_bound_access_tokens,
            require_par,
            no_require_par,
            json,
        } => {
            let listed = |v: Vec<String>| (!v.is_empty()).then_some(v);
            let patch = ClientPatch {
                name,
                redirect_uris: listed(redirect_uris),
                post_logout_redirect_uris: listed(post_logout_redirect_uris),
                backchannel_logout_uri: match (backchannel_logout_uri, no_backchannel_logout_uri) {
                    (Some(uri), _) => Some(Some(uri)),
                    (None, true) => Some(None),
                    (None, false) => None,
                },
                scopes: listed(scopes),
                grant_types: listed(grants),
                access_token_ttl: access_token_ttl.map(Some),
                dpop_bound_access_tokens: switched(
                    dpop_bound_access_tokens,
                    no_dpop_bound_access_tokens,
                ),
                require_pushed_authorization_requests: switched(require_par, no_require_par),
            };
            let client = clients
                .update(&client_id, patch, Actor::Cli)
                .await
                .map_err(|e| failed(&describe(e)))?;
            if json {
                let view = ClientView::from(client);
                println!("{}", serde_json::to_string(&view).map_err(|e| failed(&e))?);
            } else {
                println!("updated {client_id}");
            }
        }
        ClientsCommand::RotateSecret {
            client_id,
            grace,
            json,
        } => {
            let secret = clients
                .rotate_secret(&client_id, grace, Actor::Cli)
                .await
                .map_err(|e| failed(&describe(e)))?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"client_id": client_id, "client_secret": secret})
                );
            } else {
                println!("client_secret: {secret}   (shown once; store it now)");
                if grace > 0 {
                    println!("the previous secret keeps working for {grace} s");
                }
            }
        }
    }
    Ok(())
}
