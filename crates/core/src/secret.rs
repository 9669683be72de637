//! Secrets that must never reach a log line, an error message or the status row.
//!
//! [`Secret`] wraps a credential: its `Debug` and `Display` print `***`, and the only way to
//! read it is [`Secret::expose`], which is greppable. [`redact_url`] removes the password from
//! a connection URL such as `DATABASE_URL` so the rest of it can be shown in errors.

use std::fmt;

/// A credential (password, token, key). Printing it shows `***`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps the credential `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret's value. Call it only where the value is handed to a client library.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when the value is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Returns `url` with the password of its userinfo (`user:password@`) replaced by `***`, and
/// any `password=` query or key/value parameter masked too. Anything that is not a URL is
/// masked whole when it contains `password`, to be safe.
pub fn redact_url(url: &str) -> String {
    let mut out = String::with_capacity(url.len());
    match url.find("://") {
        Some(scheme_end) => {
            let (scheme, rest) = url.split_at(scheme_end + 3);
            out.push_str(scheme);
            let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            let (authority, tail) = rest.split_at(authority_end);
            match authority.rfind('@') {
                Some(at) => {
                    let userinfo = &authority[..at];
                    match userinfo.find(':') {
                        Some(colon) => {
                            out.push_str(&userinfo[..colon]);
                            out.push_str(":***");
                        }
                        None => out.push_str(userinfo),
                    }
                    out.push_str(&authority[at..]);
                }
                None => out.push_str(authority),
            }
            out.push_str(&mask_password_params(tail));
        }
        None => out.push_str(&mask_password_params(url)),
    }
    out
}

/// Masks the value of every `password=` parameter, in a query string (`&password=x`) or a
/// libpq key/value string (`password=x host=...`).
fn mask_password_params(s: &str) -> String {
    let lower = s.to_ascii_lowercase();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while let Some(found) = lower[i..].find("password=") {
        let value_start = i + found + "password=".len();
        out.push_str(&s[i..value_start]);
        out.push_str("***");
        let value_end = s[value_start..].find(['&', ' ', '#']).map_or(s.len(), |e| value_start + e);
        i = value_end;
    }
    out.push_str(&s[i..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn redacts_userinfo_password() {
        assert_eq!(
            redact_url("postgres://bob:s3cr%40t@db:5432/app?sslmode=require"),
            "postgres://bob:***@db:5432/app?sslmode=require"
        );
        assert_eq!(redact_url("postgres://bob@db/app"), "postgres://bob@db/app");
        assert_eq!(redact_url("postgres://db/app"), "postgres://db/app");
    }

    #[test]
    fn redacts_password_parameters() {
        assert_eq!(
            redact_url("postgres://db/app?user=x&password=hunter2&sslmode=disable"),
            "postgres://db/app?user=x&password=***&sslmode=disable"
        );
        assert_eq!(redact_url("host=db password=hunter2 user=x"), "host=db password=*** user=x");
    }

    #[test]
    fn at_sign_in_password_does_not_leak() {
        let r = redact_url("postgres://u:p@ss@host/db");
        assert!(!r.contains("p@ss"), "{r}");
        assert!(r.ends_with("@host/db"), "{r}");
    }
}
