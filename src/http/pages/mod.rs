//! The self-service pages (`/account/*`): sign-up, a forgotten password and
//! the signed-in account page, HTML forms with CSRF tokens that work
//! without JavaScript, calling the same domain functions as the JSON API.

pub mod apps;
pub mod forms;
pub mod manage;
pub mod recovery;
pub mod signup;
