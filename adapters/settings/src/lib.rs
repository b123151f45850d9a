//! Settings declared once.
//!
//! A section is a struct declared with [`section!`]: each setting is written
//! in one place, with its doc, type, default and (optionally) its check, and
//! the rest follows from that declaration:
//!
//! - its file form: the struct deserializes from a TOML table (unknown keys
//!   refused), the key being the field's name (`payment.fault_latency_ms`);
//! - its environment variable: the key in capitals, `.` becoming `_`, after
//!   the process's prefix (`ROAMING_PAYMENT_FAULT_LATENCY_MS`), its value
//!   read by [`FromEnv`] for the field's type (or by the parser the
//!   declaration names); `NAME_FILE=path` reads `NAME` from a file;
//! - its check ([`Check`]: a range, [`POSITIVE`], or a function), run after
//!   the file and the environment are applied; the error names the key;
//! - its row in the table of every setting ([`table`]), which the README's
//!   table is checked against.
//!
//! A field whose type is itself a section is declared under `sections { }`:
//! it is a TOML table and its variables carry its name (`PAYMENT_`).

use std::fmt::{Debug, Display};
use std::net::SocketAddr;
use std::ops::{RangeFrom, RangeInclusive};
use std::path::PathBuf;

// The macro names this crate by its name, inside it too (its tests).
#[cfg(test)]
extern crate self as adapters_settings;

#[doc(hidden)]
pub use serde as __serde;

/// A setting that is missing, malformed or out of range; names the setting
/// (its key, or the environment variable that set it).
#[derive(Debug, thiserror::Error)]
#[error("invalid setting {name}: {problem}")]
pub struct SettingsError {
    pub name: String,
    pub problem: String,
}

/// The error naming `name`.
pub fn bad(name: &str, problem: impl Display) -> SettingsError {
    SettingsError {
        name: name.to_owned(),
        problem: problem.to_string(),
    }
}

/// A struct of settings, declared with [`section!`].
pub trait Section {
    /// Sets the setting whose environment variable is `env`, when this
    /// section (whose variables start with `prefix`) has it: `None` when it
    /// has not, else whether `value` was read.
    fn set_env(&mut self, prefix: &str, env: &str, value: &str) -> Option<Result<(), String>>;

    /// Checks every setting against its declaration; the error names the
    /// setting's key (`prefix` is this section's, e.g. `payment.`).
    fn check(&self, prefix: &str) -> Result<(), SettingsError>;

    /// One row per setting, the values of `self` as defaults.
    fn rows(&self, key_prefix: &str, env_prefix: &str, out: &mut Vec<Entry>);
}

/// One setting in the table of every setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its TOML key, e.g. `payment.fault_latency_ms`.
    pub key: String,
    /// Its environment variable, e.g. `ROAMING_PAYMENT_FAULT_LATENCY_MS`.
    pub env: String,
    /// Its default as the environment would spell it; `unset` for an
    /// optional setting that is off, `none` for an empty list.
    pub default: String,
    /// Its doc comment, lines joined.
    pub doc: String,
}

impl Entry {
    #[doc(hidden)]
    pub fn new<T: serde::Serialize>(
        key_prefix: &str,
        env_prefix: &str,
        field: &str,
        default: &T,
        doc: &[&str],
    ) -> Self {
        let default = match serde_json::to_value(default) {
            Ok(serde_json::Value::Null) => "unset".to_owned(),
            Ok(serde_json::Value::String(s)) if s.is_empty() => "\"\"".to_owned(),
            Ok(serde_json::Value::String(s)) => s,
            Ok(serde_json::Value::Array(a)) if a.is_empty() => "none".to_owned(),
            Ok(v) => v.to_string(),
            Err(e) => format!("({e})"),
        };
        Self {
            key: format!("{key_prefix}{field}"),
            env: env_name(env_prefix, field),
            default,
            doc: doc
                .iter()
                .map(|l| l.trim())
                .collect::<Vec<_>>()
                .join(" ")
                .trim()
                .to_owned(),
        }
    }

    /// The first sentence of its doc.
    pub fn summary(&self) -> &str {
        let doc = self.doc.as_str();
        let mut from = 0;
        while let Some(at) = doc[from..].find(". ") {
            let end = from + at + 1;
            if doc[end + 1..].starts_with(|c: char| c.is_uppercase()) {
                return &doc[..end];
            }
            from = end;
        }
        doc
    }
}

/// Every setting of `S`, with its default, its variables starting with
/// `env_prefix` (e.g. `ROAMING_`).
pub fn table<S: Section + Default>(env_prefix: &str) -> Vec<Entry> {
    let mut out = Vec::new();
    S::default().rows("", env_prefix, &mut out);
    out
}

/// Applies the environment variable `name` (which starts with `prefix`) to
/// `settings`. `NAME_FILE=path`, when `NAME_FILE` is not a setting itself,
/// sets `NAME` to the file's contents, trimmed (secrets mounted as files).
///
/// # Errors
/// When `name` is no setting, or its value cannot be read; names `name`.
pub fn set_env<S: Section>(
    settings: &mut S,
    prefix: &str,
    name: &str,
    value: &str,
) -> Result<(), SettingsError> {
    if let Some(done) = settings.set_env(prefix, name, value) {
        return done.map_err(|e| bad(name, e));
    }
    match name.strip_suffix("_FILE") {
        Some(setting) if setting.len() > prefix.len() => {
            let text =
                std::fs::read_to_string(value).map_err(|e| bad(name, format!("{value}: {e}")))?;
            match settings.set_env(prefix, setting, text.trim()) {
                Some(done) => done.map_err(|e| bad(name, e)),
                None => Err(bad(name, "unknown setting")),
            }
        }
        _ => Err(bad(name, "unknown setting")),
    }
}

/// The environment variable of `field` in a section whose variables start
/// with `prefix`.
pub fn env_name(prefix: &str, field: &str) -> String {
    format!("{prefix}{}", field.to_ascii_uppercase())
}

/// How a setting's type reads an environment variable's value.
pub trait FromEnv: Sized {
    /// # Errors
    /// When `value` is not one.
    fn from_env(value: &str) -> Result<Self, String>;
}

macro_rules! parsed {
    ($($t:ty),*) => {$(
        impl FromEnv for $t {
            fn from_env(value: &str) -> Result<Self, String> {
                value.parse().map_err(|e| format!("{e}"))
            }
        }
    )*};
}

parsed!(u16, u32, u64, usize, f64, SocketAddr);

impl FromEnv for String {
    fn from_env(value: &str) -> Result<Self, String> {
        Ok(value.to_owned())
    }
}

impl FromEnv for PathBuf {
    fn from_env(value: &str) -> Result<Self, String> {
        Ok(Self::from(value))
    }
}

/// `1`, `true` or `yes` are on; anything else is off.
impl FromEnv for bool {
    fn from_env(value: &str) -> Result<Self, String> {
        Ok(matches!(value, "1" | "true" | "yes"))
    }
}

/// Empty is unset.
impl FromEnv for Option<String> {
    fn from_env(value: &str) -> Result<Self, String> {
        Ok(Some(value.to_owned()).filter(|v| !v.is_empty()))
    }
}

/// Empty is unset.
impl FromEnv for Option<PathBuf> {
    fn from_env(value: &str) -> Result<Self, String> {
        Ok(Some(PathBuf::from(value)).filter(|_| !value.is_empty()))
    }
}

/// Empty or `off` is unset.
impl FromEnv for Option<SocketAddr> {
    fn from_env(value: &str) -> Result<Self, String> {
        match value {
            "" | "off" => Ok(None),
            v => SocketAddr::from_env(v).map(Some),
        }
    }
}

/// Comma-separated; blanks around items and empty items are dropped.
impl FromEnv for Vec<String> {
    fn from_env(value: &str) -> Result<Self, String> {
        Ok(list(value))
    }
}

/// The items of a comma-separated list, trimmed, empty ones dropped.
pub fn list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A setting that only a file can set (a list of tables, say).
///
/// # Errors
/// Always.
pub fn file_only<T>(_: &str) -> Result<T, String> {
    Err("can only be set in the config file".to_owned())
}

/// What a setting must be; the problem is said without the setting's name.
pub trait Check<T> {
    /// # Errors
    /// When `value` is not allowed.
    fn check(&self, value: &T) -> Result<(), String>;
}

impl<T: PartialOrd + Debug> Check<T> for RangeInclusive<T> {
    fn check(&self, value: &T) -> Result<(), String> {
        if self.contains(value) {
            Ok(())
        } else {
            Err(format!("must be {:?}-{:?}", self.start(), self.end()))
        }
    }
}

impl<T: PartialOrd + Debug> Check<T> for RangeFrom<T> {
    fn check(&self, value: &T) -> Result<(), String> {
        if self.contains(value) {
            Ok(())
        } else {
            Err(format!("must be at least {:?}", self.start))
        }
    }
}

/// More than zero.
#[derive(Debug, Clone, Copy)]
pub struct Positive;

/// More than zero.
pub const POSITIVE: Positive = Positive;

impl<T: PartialOrd + Default> Check<T> for Positive {
    fn check(&self, value: &T) -> Result<(), String> {
        if *value > T::default() {
            Ok(())
        } else {
            Err("must be positive".to_owned())
        }
    }
}

impl<T, F: Fn(&T) -> Result<(), String>> Check<T> for F {
    fn check(&self, value: &T) -> Result<(), String> {
        self(value)
    }
}

#[doc(hidden)]
#[macro_export]
macro_rules! __from_env {
    ($ty:ty, $value:expr) => {
        <$ty as $crate::FromEnv>::from_env($value)
    };
    ($ty:ty, $value:expr, $parse:expr) => {
        ($parse)($value)
    };
}

/// Declares a section of settings: a struct whose every field is written
/// once, as `doc pub name: type = default[, env parser][, check what];`,
/// then the nested sections under `sections { }`, as `doc pub name: type =
/// default;`.
///
/// ```
/// adapters_settings::section! {
///     /// How the example works.
///     #[derive(Debug, Clone)]
///     pub struct Example {
///         /// How long a call may take, in milliseconds.
///         pub deadline_ms: u64 = 2_000, check 1..=60_000;
///         /// Where to send the calls, comma-separated in the environment.
///         pub addrs: Vec<String> = Vec::new();
///     }
/// }
/// let mut e = Example::default();
/// adapters_settings::set_env(&mut e, "APP_", "APP_DEADLINE_MS", "0").unwrap();
/// let error = adapters_settings::Section::check(&e, "").unwrap_err();
/// assert_eq!(error.to_string(), "invalid setting deadline_ms: must be 1-60000");
/// ```
#[macro_export]
macro_rules! section {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $(
                $(#[doc = $doc:literal])*
                pub $field:ident : $ty:ty = $default:expr
                $(, env $parse:expr)?
                $(, check $check:expr)?
            ;)*
            $(
                sections {
                    $(
                        $(#[doc = $sdoc:literal])*
                        pub $section:ident : $sty:ty = $sdefault:expr;
                    )*
                }
            )?
        }
    ) => {
        $(#[$meta])*
        #[derive($crate::__serde::Deserialize)]
        #[serde(crate = "adapters_settings::__serde", default, deny_unknown_fields)]
        $vis struct $name {
            $( $(#[doc = $doc])* pub $field: $ty, )*
            $($( $(#[doc = $sdoc])* pub $section: $sty, )*)?
        }

        impl ::core::default::Default for $name {
            fn default() -> Self {
                Self {
                    $( $field: $default, )*
                    $($( $section: $sdefault, )*)?
                }
            }
        }

        impl $crate::Section for $name {
            fn set_env(
                &mut self,
                prefix: &str,
                env: &str,
                value: &str,
            ) -> ::core::option::Option<::core::result::Result<(), ::std::string::String>> {
                $(
                    if $crate::env_name(prefix, stringify!($field)) == env {
                        return Some(
                            $crate::__from_env!($ty, value $(, $parse)?)
                                .map(|v| self.$field = v),
                        );
                    }
                )*
                $($(
                    let inner = format!("{}_", $crate::env_name(prefix, stringify!($section)));
                    if let Some(done) = $crate::Section::set_env(&mut self.$section, &inner, env, value) {
                        return Some(done);
                    }
                )*)?
                None
            }

            fn check(&self, prefix: &str) -> ::core::result::Result<(), $crate::SettingsError> {
                $($(
                    $crate::Check::check(&$check, &self.$field).map_err(|problem| {
                        $crate::bad(&format!("{prefix}{}", stringify!($field)), problem)
                    })?;
                )?)*
                $($(
                    $crate::Section::check(
                        &self.$section,
                        &format!("{prefix}{}.", stringify!($section)),
                    )?;
                )*)?
                Ok(())
            }

            fn rows(&self, key_prefix: &str, env_prefix: &str, out: &mut Vec<$crate::Entry>) {
                $(
                    out.push($crate::Entry::new(
                        key_prefix,
                        env_prefix,
                        stringify!($field),
                        &self.$field,
                        &[$($doc),*],
                    ));
                )*
                $($(
                    $crate::Section::rows(
                        &self.$section,
                        &format!("{key_prefix}{}.", stringify!($section)),
                        &format!("{}_", $crate::env_name(env_prefix, stringify!($section))),
                        out,
                    );
                )*)?
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    section! {
        /// An inner section.
        #[derive(Debug, Clone)]
        pub struct Inner {
            /// A fraction.
            pub rate: f64 = 0.0, check 0.0..=1.0;
            /// A listener, `off` to turn it off.
            pub listen: Option<SocketAddr> = None;
        }
    }

    section! {
        /// The outer section.
        #[derive(Debug, Clone)]
        pub struct Outer {
            /// A count. Of things.
            pub count: usize = 4, check POSITIVE;
            /// Items.
            pub inner_items: Vec<String> = Vec::new();
            /// A path, e.g. `/x`. Never empty.
            pub path: PathBuf = PathBuf::from("data");
            /// Only in files.
            pub tables: Vec<u32> = Vec::new(), env file_only;
            sections {
                /// The inner one.
                pub inner: Inner = Inner { rate: 0.5, ..Inner::default() };
            }
        }
    }

    #[test]
    fn variables_follow_the_keys() {
        let mut o = Outer::default();
        set_env(&mut o, "X_", "X_COUNT", "7").unwrap();
        set_env(&mut o, "X_", "X_INNER_ITEMS", " a, ,b ").unwrap();
        set_env(&mut o, "X_", "X_INNER_RATE", "0.25").unwrap();
        set_env(&mut o, "X_", "X_INNER_LISTEN", "127.0.0.1:1").unwrap();
        assert_eq!(o.count, 7);
        assert_eq!(o.inner_items, ["a", "b"]);
        assert!((o.inner.rate - 0.25).abs() < f64::EPSILON);
        assert!(o.inner.listen.is_some());
        set_env(&mut o, "X_", "X_INNER_LISTEN", "off").unwrap();
        assert!(o.inner.listen.is_none());
        let e = set_env(&mut o, "X_", "X_INNER_NOPE", "1").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid setting X_INNER_NOPE: unknown setting"
        );
        let e = set_env(&mut o, "X_", "X_COUNT", "many").unwrap_err();
        assert_eq!(e.name, "X_COUNT");
        let e = set_env(&mut o, "X_", "X_TABLES", "1").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid setting X_TABLES: can only be set in the config file"
        );
    }

    #[test]
    fn checks_name_the_key() {
        let mut o = Outer::default();
        o.check("").unwrap();
        o.inner.rate = 2.0;
        assert_eq!(
            o.check("").unwrap_err().to_string(),
            "invalid setting inner.rate: must be 0.0-1.0"
        );
        o.inner.rate = 0.0;
        o.count = 0;
        assert_eq!(
            o.check("").unwrap_err().to_string(),
            "invalid setting count: must be positive"
        );
    }

    #[test]
    fn files_use_the_keys_and_refuse_unknown_ones() {
        let o: Outer = toml::from_str("count = 3\n[inner]\nrate = 1.0\n").unwrap();
        assert_eq!(o.count, 3);
        assert!((o.inner.rate - 1.0).abs() < f64::EPSILON);
        assert!(toml::from_str::<Outer>("cont = 3\n").is_err());
    }

    #[test]
    fn the_table_lists_every_setting_with_its_default() {
        let rows: Vec<_> = table::<Outer>("X_")
            .into_iter()
            .map(|e| {
                (
                    e.key.clone(),
                    e.env.clone(),
                    e.default.clone(),
                    e.summary().to_owned(),
                )
            })
            .collect();
        let row = |k: &str, e: &str, d: &str, s: &str| {
            (k.to_owned(), e.to_owned(), d.to_owned(), s.to_owned())
        };
        assert_eq!(
            rows,
            [
                row("count", "X_COUNT", "4", "A count."),
                row("inner_items", "X_INNER_ITEMS", "none", "Items."),
                row("path", "X_PATH", "data", "A path, e.g. `/x`."),
                row("tables", "X_TABLES", "none", "Only in files."),
                row("inner.rate", "X_INNER_RATE", "0.5", "A fraction."),
                row(
                    "inner.listen",
                    "X_INNER_LISTEN",
                    "unset",
                    "A listener, `off` to turn it off."
                ),
            ]
        );
    }
}

/// `url` as it may be printed: a password in its user part is replaced by
/// `***` (`postgres://app:***@db:5432/app`), and so is a lone user part, which
/// some schemes use as a token (`nats://***@nats:4222`). Works on any
/// `scheme://[user[:password]@]host...` form without parsing the rest, so a
/// malformed URL is never printed with its secret either: everything up to
/// the last `@` is taken for the user part (a password may hold `/`, `?`,
/// `#` or `,` unencoded; an `@` later in a query hides more than needed,
/// never less). A comma-separated list (a NATS cluster's servers) is
/// redacted entry by entry, an entry being what starts with `scheme://`.
pub fn redacted(url: &str) -> String {
    url_entries(url)
        .iter()
        .map(|entry| redacted_one(entry))
        .collect::<Vec<_>>()
        .join(",")
}

/// The entries of a comma-separated list of URLs: a piece that does not
/// start with `scheme://` belongs to the entry before it (a comma in a
/// password).
fn url_entries(list: &str) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    for piece in list.split(',') {
        match found.last_mut() {
            Some(previous) if !starts_with_scheme(piece.trim_start()) => {
                previous.push(',');
                previous.push_str(piece);
            }
            _ => found.push(piece.to_owned()),
        }
    }
    found
}

fn starts_with_scheme(s: &str) -> bool {
    s.find("://").is_some_and(|i| {
        i > 0
            && s[..i]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    })
}

fn redacted_one(url: &str) -> String {
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[start..];
    let Some(at) = rest.rfind('@') else {
        return url.to_owned();
    };
    let user = &rest[..at];
    let shown = match user.split_once(':') {
        Some((name, _)) => format!("{name}:***"),
        None => "***".to_owned(),
    };
    format!("{}{shown}{}", &url[..start], &rest[at..])
}

#[cfg(test)]
mod redaction {
    use super::redacted;

    #[test]
    fn passwords_and_tokens_in_urls_are_hidden() {
        for (url, shown) in [
            (
                "postgres://app:S3cret@db:5432/app",
                "postgres://app:***@db:5432/app",
            ),
            (
                "postgresql://app:p%40ss@pg-rw.roaming:5432/app?sslmode=require",
                "postgresql://app:***@pg-rw.roaming:5432/app?sslmode=require",
            ),
            ("nats://tok3n@nats:4222", "nats://***@nats:4222"),
            ("nats://u:a@b@nats:4222", "nats://u:***@nats:4222"),
            ("nats://nats:4222", "nats://nats:4222"),
            (
                "nats://u:pw1@a:4222,nats://u:pw2@b:4222",
                "nats://u:***@a:4222,nats://u:***@b:4222",
            ),
            // A password with an unencoded comma, slash, question mark.
            ("postgres://app:pa,ss@db/app", "postgres://app:***@db/app"),
            (
                "postgres://app:p/a?ss@db:5432/app",
                "postgres://app:***@db:5432/app",
            ),
            (
                "nats://u:p,w@a:4222,nats://u:p,w@b:4222",
                "nats://u:***@a:4222,nats://u:***@b:4222",
            ),
            ("sqlite://data/x.db?mode=rwc", "sqlite://data/x.db?mode=rwc"),
            // An `@` past the host: more hidden than needed, never less.
            ("http://host/path@x", "http://***@x"),
            ("not a url", "not a url"),
        ] {
            assert_eq!(redacted(url), shown, "{url}");
        }
    }
}
