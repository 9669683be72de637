//! `DATABASE_URL`, read the way the Go worker's pgx reads it, validated once at start-up.
//!
//! Both of libpq's forms are taken: a URL (`postgres[ql]://user:pass@host:port,host2/db?k=v`)
//! and a keyword/value string (`host=db dbname=app sslmode=require`). Every parameter is of
//! one kind (`Kind`):
//! - **connection** parameters that tokio-postgres applies itself (host, port, user, options,
//!   `connect_timeout`, `target_session_attrs`, …), passed on as a keyword/value string;
//! - **TLS** parameters that the worker applies with rustls: `sslmode` with libpq's six
//!   meanings, `sslrootcert`, `sslcert`, `sslkey` ([`PgTls`]);
//! - **schema** parameters: Jitsu's `schema` and a `search_path`, sent as the session's
//!   `search_path` in the start-up packet (as pgx sends a runtime parameter), so that every
//!   statement, `CREATE TABLE` included, uses that schema;
//! - **runtime** parameters, a server setting pgx would send in the start-up packet
//!   (`TimeZone`, `statement_timeout`, …), sent here as `-c name=value` in `options`;
//! - **no effect here**: pgx's pool settings and libpq's client-side tunings that change
//!   nothing for one connection; they are accepted and named once in the log.
//!
//! A parameter neither pgx nor libpq knows is an error that names it, as is (**refused**)
//! one that is known but would be silently weakened here (`sslcrl`, an encrypted key's
//! `sslpassword`, …).
//! Errors never show a value of `password`.

use std::fmt::Write as _;
use std::path::PathBuf;

use crate::secret::Secret;

/// What a parameter is to the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// tokio-postgres applies it (under the name it knows).
    Connection(&'static str),
    /// `sslmode`, `sslrootcert`, `sslcert`, `sslkey`.
    Tls,
    /// `schema`, `search_path`.
    Schema,
    /// A server setting pgx sends as a runtime parameter: `-c name=value` here.
    Runtime,
    /// Known to pgx or libpq, without effect on the worker's one connection.
    NoEffect,
    /// Known, but what it asks for is not done here; why.
    Refused(&'static str),
}

/// Every parameter the worker takes, by its libpq or pgx name.
fn kind(key: &str) -> Option<Kind> {
    use Kind::*;
    Some(match key {
        "host"
        | "hostaddr"
        | "port"
        | "user"
        | "password"
        | "dbname"
        | "options"
        | "application_name"
        | "connect_timeout"
        | "tcp_user_timeout"
        | "keepalives"
        | "keepalives_idle"
        | "keepalives_interval"
        | "channel_binding"
        | "load_balance_hosts"
        | "sslnegotiation"
        | "target_session_attrs" => Connection(
            // The names are tokio-postgres's too; leak-free since they are literals above.
            match key {
                "host" => "host",
                "hostaddr" => "hostaddr",
                "port" => "port",
                "user" => "user",
                "password" => "password",
                "dbname" => "dbname",
                "options" => "options",
                "application_name" => "application_name",
                "connect_timeout" => "connect_timeout",
                "tcp_user_timeout" => "tcp_user_timeout",
                "keepalives" => "keepalives",
                "keepalives_idle" => "keepalives_idle",
                "keepalives_interval" => "keepalives_interval",
                "channel_binding" => "channel_binding",
                "load_balance_hosts" => "load_balance_hosts",
                "sslnegotiation" => "sslnegotiation",
                _ => "target_session_attrs",
            },
        ),
        "keepalives_count" => Connection("keepalives_retries"),
        "sslmode" | "sslrootcert" | "sslcert" | "sslkey" => Tls,
        "schema" | "search_path" => Schema,
        "timezone" | "TimeZone" | "statement_timeout" | "lock_timeout" | "idle_in_transaction_session_timeout" => {
            Runtime
        }
        "pool_max_conns"
        | "pool_min_conns"
        | "pool_min_idle_conns"
        | "pool_max_conn_lifetime"
        | "pool_max_conn_lifetime_jitter"
        | "pool_max_conn_idle_time"
        | "pool_health_check_period"
        | "statement_cache_capacity"
        | "description_cache_capacity"
        | "default_query_exec_mode"
        | "min_read_buffer_size"
        | "fallback_application_name"
        | "sslsni"
        | "sslcompression"
        | "requiressl"
        | "gssencmode"
        | "gsslib"
        | "krbsrvname"
        | "gssdelegation"
        | "client_encoding" => NoEffect,
        "sslpassword" => Refused("an encrypted sslkey is not supported: give the key unencrypted (PEM)"),
        "sslcrl" | "sslcrldir" => Refused("certificate revocation lists are not checked by this worker"),
        "sslcertmode" => Refused("not supported: sslcert and sslkey are always sent when given"),
        "ssl_min_protocol_version" | "ssl_max_protocol_version" => {
            Refused("not supported: the worker speaks TLS 1.2 and 1.3, as rustls allows")
        }
        "service" | "servicefile" | "passfile" => Refused("not supported: give the values in DATABASE_URL itself"),
        "requirepeer" => Refused("not supported: connect over TCP"),
        "replication" => Refused("a replication connection cannot write the status row"),
        _ => return None,
    })
}

/// libpq's `sslmode`. The default, as in libpq and pgx, is `prefer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// libpq tries without TLS first; here, as `prefer` (TLS when the server offers it).
    Allow,
    /// TLS when the server offers it, the certificate not checked; else without TLS.
    #[default]
    Prefer,
    /// TLS, the certificate not checked, unless `sslrootcert` is given: then as `verify-ca`
    /// (libpq's rule).
    Require,
    /// TLS, the certificate's chain checked against `sslrootcert` (else the system's roots).
    VerifyCa,
    /// As `verify-ca`, and the certificate must name the host.
    VerifyFull,
}

impl SslMode {
    fn parse(s: &str) -> Option<SslMode> {
        Some(match s {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }

    /// tokio-postgres's own mode: whether TLS is used at all.
    fn native(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow | SslMode::Prefer => "prefer",
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => "require",
        }
    }
}

/// What is checked of the server's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// Nothing (the connection is encrypted, not authenticated).
    Nothing,
    /// Its chain, up to a trusted root.
    Chain,
    /// Its chain and that it names the host.
    ChainAndName,
}

/// The roots `verify-ca` and `verify-full` trust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Roots {
    /// The system's (`sslrootcert=system`, or none given).
    System,
    /// Only the certificates of this PEM file.
    File(PathBuf),
}

/// The TLS half of the URL.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PgTls {
    /// `sslmode`.
    pub mode: SslMode,
    /// `sslrootcert`.
    pub root_cert: Option<Roots>,
    /// `sslcert` and `sslkey`: a client certificate and its key (PEM).
    pub client: Option<(PathBuf, PathBuf)>,
}

impl PgTls {
    /// What is verified, by libpq's rules.
    pub fn verify(&self) -> Verify {
        match (self.mode, &self.root_cert) {
            (SslMode::VerifyFull, _) => Verify::ChainAndName,
            (SslMode::VerifyCa, _) | (SslMode::Require, Some(_)) => Verify::Chain,
            _ => Verify::Nothing,
        }
    }

    /// The roots to trust when [`PgTls::verify`] checks anything.
    pub fn roots(&self) -> Roots {
        self.root_cert.clone().unwrap_or(Roots::System)
    }
}

/// A parsed `DATABASE_URL`.
#[derive(Debug, Clone)]
pub struct DbUrl {
    /// The connection parameters, as a keyword/value string tokio-postgres parses.
    native: Secret,
    /// The TLS parameters, which the worker applies itself with rustls.
    pub tls: PgTls,
    /// The session's `search_path`: `schema` as one quoted name, else `search_path` as given.
    pub search_path: Option<String>,
    /// Parameters accepted without effect, named once in the log.
    pub no_effect: Vec<String>,
    /// The URL as it may be shown: without its password.
    pub shown: String,
}

/// Why `DATABASE_URL` was refused. No variant holds a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DbUrlError {
    /// A parameter neither libpq nor pgx knows: its name.
    #[error("unknown parameter {0:?} (neither libpq nor pgx knows it)")]
    Unknown(String),
    /// A known parameter, or a value of one, that the worker does not honour.
    #[error("parameter {key:?}: {why}")]
    Refused {
        /// The parameter's name.
        key: String,
        /// What is not done here, and what to do instead where there is a way.
        why: &'static str,
    },
    /// A parameter's value is not one the worker takes.
    #[error("parameter {key:?}: {value:?} is not one of {expected}")]
    Value {
        /// The parameter's name.
        key: String,
        /// The value as given.
        value: String,
        /// The values taken, as a list for the message.
        expected: &'static str,
    },
    /// The URL or keyword/value string is malformed, or `sslcert` and `sslkey` are not given
    /// together: what is wrong.
    #[error("{0}")]
    Syntax(&'static str),
    /// A parameter is given more than once: its name.
    #[error("parameter {0:?} is given twice")]
    Twice(String),
}

impl DbUrl {
    /// Parses and checks `raw`.
    pub fn parse(raw: &str) -> Result<DbUrl, DbUrlError> {
        let raw = raw.trim();
        let pairs = if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
            url_pairs(raw)?
        } else {
            keyword_pairs(raw)?
        };
        let mut seen: Vec<&str> = Vec::new();
        let mut native: Vec<(&'static str, String)> = Vec::new();
        let (mut tls, mut search_path, mut schema, mut no_effect) = (PgTls::default(), None, None, Vec::new());
        let (mut cert, mut key) = (None, None);
        let mut runtime = String::new();
        for (k, v) in &pairs {
            if seen.contains(&k.as_str()) {
                return Err(DbUrlError::Twice(k.clone()));
            }
            seen.push(k);
            match kind(k).ok_or_else(|| DbUrlError::Unknown(k.clone()))? {
                Kind::Connection("target_session_attrs") => native.push(("target_session_attrs", session_attrs(v)?)),
                Kind::Connection(name) => native.push((name, v.clone())),
                Kind::Tls => match k.as_str() {
                    "sslmode" => {
                        tls.mode = SslMode::parse(v).ok_or_else(|| DbUrlError::Value {
                            key: k.clone(),
                            value: v.clone(),
                            expected: "disable, allow, prefer, require, verify-ca, verify-full",
                        })?
                    }
                    "sslrootcert" if v == "system" => tls.root_cert = Some(Roots::System),
                    "sslrootcert" => tls.root_cert = Some(Roots::File(PathBuf::from(v))),
                    "sslcert" => cert = Some(PathBuf::from(v)),
                    _ => key = Some(PathBuf::from(v)),
                },
                // Jitsu's pool sets `search_path TO '<schema>'`: one schema, its case kept.
                Kind::Schema if k == "schema" => schema = Some(format!("\"{}\"", v.replace('"', "\"\""))),
                Kind::Schema => search_path = Some(v.clone()),
                Kind::Runtime => {
                    let _ = write!(runtime, " -c {}={}", k.to_ascii_lowercase(), escape_option(v));
                }
                Kind::NoEffect if k == "client_encoding" && !v.eq_ignore_ascii_case("utf8") => {
                    return Err(DbUrlError::Value { key: k.clone(), value: v.clone(), expected: "UTF8" })
                }
                Kind::NoEffect if k == "gssencmode" && v == "require" => {
                    return Err(DbUrlError::Refused { key: k.clone(), why: "GSSAPI encryption is not supported" })
                }
                Kind::NoEffect => no_effect.push(k.clone()),
                Kind::Refused(why) => return Err(DbUrlError::Refused { key: k.clone(), why }),
            }
        }
        tls.client = match (cert, key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            (Some(_), None) => return Err(DbUrlError::Syntax("sslcert is given without sslkey")),
            (None, Some(_)) => return Err(DbUrlError::Syntax("sslkey is given without sslcert")),
        };
        // Jitsu's `schema` wins over a `search_path`, as in Jitsu's own pool.
        let search_path = schema.or(search_path).filter(|s| !matches!(s.trim(), "" | "\"\""));
        if let Some(path) = &search_path {
            let _ = write!(runtime, " -c search_path={}", escape_option(path));
        }
        if !runtime.is_empty() {
            match native.iter_mut().find(|(k, _)| *k == "options") {
                Some((_, options)) => options.push_str(&runtime),
                None => native.push(("options", runtime.trim_start().to_owned())),
            }
        }
        native.push(("sslmode", tls.mode.native().to_owned()));
        if !native.iter().any(|(k, _)| *k == "application_name") {
            native.push(("application_name", "reprocessing-worker".to_owned()));
        }
        let mut text = String::new();
        for (k, v) in &native {
            let _ = write!(text, "{k}='{}' ", v.replace('\\', "\\\\").replace('\'', "\\'"));
        }
        Ok(DbUrl {
            native: Secret::new(text.trim_end()),
            tls,
            search_path,
            no_effect,
            shown: crate::secret::redact_url(raw),
        })
    }

    /// The connection parameters as a libpq keyword/value string, for tokio-postgres.
    pub fn connection_string(&self) -> &Secret {
        &self.native
    }

    /// The first schema of the search path, which `CREATE TABLE` uses: created when the
    /// worker creates the tables.
    pub fn schema(&self) -> Option<String> {
        let first = self.search_path.as_deref()?.split(',').next()?.trim();
        let unquoted = first.strip_prefix('"').and_then(|s| s.strip_suffix('"')).map(|s| s.replace("\"\"", "\""));
        let name = unquoted.unwrap_or_else(|| first.to_ascii_lowercase());
        (!name.is_empty() && name != "$user").then_some(name)
    }
}

/// libpq's `target_session_attrs`: the worker writes, so only a writable session will do.
fn session_attrs(v: &str) -> Result<String, DbUrlError> {
    match v {
        "any" | "read-write" => Ok(v.to_owned()),
        // A primary is where writes go: tokio-postgres asks for a writable session.
        "primary" => Ok("read-write".to_owned()),
        _ => Err(DbUrlError::Value {
            key: "target_session_attrs".into(),
            value: v.to_owned(),
            expected: "any, read-write, primary (the worker writes its row, so not a read-only or standby session)",
        }),
    }
}

/// A value inside `options`: PostgreSQL splits it at spaces, and a backslash escapes.
fn escape_option(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if c == ' ' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn decode(s: &str, what: &'static str) -> Result<String, DbUrlError> {
    percent_encoding::percent_decode_str(s).decode_utf8().map(|c| c.into_owned()).map_err(|_| DbUrlError::Syntax(what))
}

/// The parameters of a URL, in libpq's order: user, password, hosts, ports, database, then
/// the query's (which may repeat none of them).
fn url_pairs(raw: &str) -> Result<Vec<(String, String)>, DbUrlError> {
    let rest = raw.split_once("://").map_or(raw, |(_, r)| r);
    let rest = rest.split('#').next().unwrap_or(rest);
    let (before_query, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, path) = before_query.split_once('/').unwrap_or((before_query, ""));
    let mut pairs = Vec::new();
    let hosts = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => {
            let (user, password) = userinfo.split_once(':').map_or((userinfo, None), |(u, p)| (u, Some(p)));
            if !user.is_empty() {
                pairs.push(("user".to_owned(), decode(user, "the user name is not valid percent-encoded UTF-8")?));
            }
            if let Some(p) = password {
                pairs.push(("password".to_owned(), decode(p, "the password is not valid percent-encoded UTF-8")?));
            }
            hosts
        }
        None => authority,
    };
    if !hosts.is_empty() {
        let (mut names, mut ports) = (Vec::new(), Vec::new());
        for spec in hosts.split(',') {
            let (host, port) = match spec.strip_prefix('[') {
                Some(v6) => {
                    let (h, after) = v6.split_once(']').ok_or(DbUrlError::Syntax("an IPv6 host lacks its ']'"))?;
                    (h, after.strip_prefix(':'))
                }
                None => spec.split_once(':').map_or((spec, None), |(h, p)| (h, Some(p))),
            };
            names.push(decode(host, "a host is not valid percent-encoded UTF-8")?);
            ports.push(port.unwrap_or("").to_owned());
        }
        pairs.push(("host".to_owned(), names.join(",")));
        if ports.iter().any(|p| !p.is_empty()) {
            pairs.push(("port".to_owned(), ports.join(",")));
        }
    }
    if !path.is_empty() {
        pairs.push(("dbname".to_owned(), decode(path, "the database name is not valid percent-encoded UTF-8")?));
    }
    for part in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').ok_or(DbUrlError::Syntax("a query parameter has no '='"))?;
        let k = decode(&k.replace('+', " "), "a parameter name is not valid percent-encoded UTF-8")?;
        let v = decode(&v.replace('+', " "), "a parameter value is not valid percent-encoded UTF-8")?;
        pairs.push((k, v));
    }
    Ok(pairs)
}

/// The parameters of libpq's keyword/value form: `key=value` separated by spaces, a value in
/// single quotes where it holds spaces, `\'` and `\\` escaped.
fn keyword_pairs(raw: &str) -> Result<Vec<(String, String)>, DbUrlError> {
    let mut pairs = Vec::new();
    let mut chars = raw.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(DbUrlError::Syntax("expected a postgres:// URL or key=value pairs (a key lacks its '=')"));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    None => return Err(DbUrlError::Syntax("a quoted value is not closed")),
                    Some('\'') => break,
                    Some('\\') => value.push(chars.next().ok_or(DbUrlError::Syntax("a value ends in '\\'"))?),
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.push(chars.next().ok_or(DbUrlError::Syntax("a value ends in '\\'"))?);
                } else {
                    value.push(c);
                }
            }
        }
        pairs.push((key, value));
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn native(url: &str) -> String {
        DbUrl::parse(url).unwrap().connection_string().expose().to_owned()
    }

    #[test]
    fn a_url_becomes_keyword_value_pairs() {
        assert_eq!(
            native("postgresql://bob:s%40cret@db:5433/app?application_name=x&connect_timeout=5"),
            "user='bob' password='s@cret' host='db' port='5433' dbname='app' application_name='x' \
             connect_timeout='5' sslmode='prefer'"
        );
        assert_eq!(
            native("postgres://a:1,[::1]:2,%2Fvar%2Frun/db"),
            "host='a,::1,/var/run' port='1,2,' dbname='db' sslmode='prefer' application_name='reprocessing-worker'"
        );
    }

    #[test]
    fn jitsus_schema_becomes_the_sessions_search_path() {
        let u = DbUrl::parse("postgres://u:p@h/db?schema=adm&sslmode=disable").unwrap();
        assert_eq!(u.search_path.as_deref(), Some("\"adm\""));
        assert_eq!(u.schema().as_deref(), Some("adm"));
        assert!(u.connection_string().expose().contains(r#"options='-c search_path="adm"'"#));
        assert_eq!(DbUrl::parse("host=h schema=Adm").unwrap().schema().as_deref(), Some("Adm"));
        assert!(u.connection_string().expose().contains("sslmode='disable'"));
        // Beside options of its own, and a quoted schema keeps its case.
        let u = DbUrl::parse(r#"host=h options='-c work_mem=4MB' search_path='"My Schema", public'"#).unwrap();
        assert_eq!(u.schema().as_deref(), Some("My Schema"));
        assert!(
            u.connection_string()
                .expose()
                .contains(r#"options='-c work_mem=4MB -c search_path="My\\ Schema",\\ public'"#),
            "{}",
            u.connection_string().expose()
        );
        assert_eq!(DbUrl::parse("host=h search_path=Adm").unwrap().schema().as_deref(), Some("adm"));
    }

    #[test]
    fn sslmode_follows_libpq() {
        let tls = |url: &str| DbUrl::parse(url).unwrap().tls;
        assert_eq!(tls("host=h").verify(), Verify::Nothing);
        assert_eq!(tls("host=h sslmode=require").verify(), Verify::Nothing);
        // libpq: require with a root certificate verifies the chain, as verify-ca.
        assert_eq!(tls("host=h sslmode=require sslrootcert=/ca.pem").verify(), Verify::Chain);
        assert_eq!(tls("host=h sslmode=verify-ca").verify(), Verify::Chain);
        assert_eq!(tls("host=h sslmode=verify-full").roots(), Roots::System);
        let full = tls("postgres://h/db?sslmode=verify-full&sslrootcert=/ca.pem&sslcert=/c.pem&sslkey=/k.pem");
        assert_eq!(full.verify(), Verify::ChainAndName);
        assert_eq!(full.roots(), Roots::File("/ca.pem".into()));
        assert_eq!(full.client, Some(("/c.pem".into(), "/k.pem".into())));
        for (mode, native) in
            [("disable", "disable"), ("allow", "prefer"), ("verify-ca", "require"), ("verify-full", "require")]
        {
            assert!(self::native(&format!("host=h sslmode={mode}")).contains(&format!("sslmode='{native}'")));
        }
    }

    #[test]
    fn unknown_refused_and_bad_values_are_named_and_never_show_the_password() {
        let err = |url: &str| DbUrl::parse(url).unwrap_err().to_string();
        assert_eq!(
            err("postgres://u:hunter2@h/db?shema=adm"),
            r#"unknown parameter "shema" (neither libpq nor pgx knows it)"#
        );
        assert!(
            err("postgres://h/db?sslmode=verify").contains("disable, allow, prefer, require, verify-ca, verify-full")
        );
        assert!(err("postgres://h/db?sslcrl=/x").contains("revocation"));
        assert!(err("postgres://h/db?target_session_attrs=standby").contains("read-only or standby"));
        assert!(err("postgres://h/db?sslcert=/c.pem").contains("without sslkey"));
        assert!(err("postgres://h/db?sslmode=require&sslmode=disable").contains("twice"));
        assert!(err("host=h password='hunter2").contains("not closed"));
        for bad in ["postgres://u:hunter2@h/db?x=1", "host=h password=hunter2 nope=1", "host=h password=hunter2 junk"] {
            assert!(!err(bad).contains("hunter2"), "{bad}");
        }
    }

    #[test]
    fn pool_settings_have_no_effect_and_runtime_settings_reach_the_server() {
        let u = DbUrl::parse("postgres://h/db?pool_max_conns=10&timezone=UTC&sslsni=1").unwrap();
        assert_eq!(u.no_effect, ["pool_max_conns", "sslsni"]);
        assert!(u.connection_string().expose().contains("options='-c timezone=UTC'"));
        assert!(DbUrl::parse("postgres://h/db?client_encoding=LATIN1").is_err());
        assert_eq!(
            native("postgres://h/db?keepalives_count=3"),
            "host='h' dbname='db' keepalives_retries='3' sslmode='prefer' application_name='reprocessing-worker'"
        );
    }

    #[test]
    fn keyword_values_unquote_and_unescape() {
        let e = keyword_pairs("postgres:/h/db").unwrap_err();
        assert_eq!(e, DbUrlError::Syntax("expected a postgres:// URL or key=value pairs (a key lacks its '=')"));
        let pairs = keyword_pairs(r"host = db  password='a b\'c' user=a\ b").unwrap();
        assert_eq!(
            pairs,
            [("host".into(), "db".into()), ("password".into(), "a b'c".into()), ("user".into(), "a b".into())]
        );
    }
}
