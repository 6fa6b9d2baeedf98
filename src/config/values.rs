//! The configuration's value types with a string form of their own: rates
//! (`"5/min"`), upstream URLs, the limit store and what a route injects, each with
//! its parser and a typed error.

use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::time::Duration;

use http::uri::{Scheme, Uri};
use serde::Deserialize;

use super::de::deserialize_via_from_str;

/// A value that does not read as what its key expects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("{0:?} is not a rate (e.g. \"5/min\", \"100/s\", \"200/hour\")")]
    Rate(String),
    #[error("{0:?} is not an http(s) URL")]
    Url(String),
    #[error("{0:?} must be http(s)://host[:port][/path] without user info")]
    UrlUserInfo(String),
    #[error("{0:?} must not carry a query")]
    UrlQuery(String),
    /// The value is echoed only when it is no URL: a URL may carry a password.
    #[error(
        "{} is neither \"memory\" nor a Redis URL; expected e.g. \"redis://redis:6379/0\", \
         \"rediss://:password@cache.example:6380/0\" (TLS), or \"env:NAME\" holding one",
        if .0.contains("://") { "the URL given".to_owned() } else { format!("{:?}", .0) }
    )]
    LimitStore(String),
}

/// Where limiter state lives.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum LimitStoreKind {
    #[default]
    Memory,
    /// Shared by replicas; the URL as written (`redis://host:port/db`), which may
    /// hold a password: never printed.
    Redis(String),
}

impl std::fmt::Debug for LimitStoreKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Memory => f.write_str("Memory"),
            Self::Redis(_) => f.write_str("Redis(<url>)"),
        }
    }
}

impl FromStr for LimitStoreKind {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        let redis = s.starts_with("redis://") || s.starts_with("rediss://");
        if s == "memory" {
            Ok(Self::Memory)
        } else if redis && redis::Client::open(s).is_ok() {
            Ok(Self::Redis(s.to_owned()))
        } else {
            Err(ValueError::LimitStore(s.to_owned()))
        }
    }
}

/// A count per period, written `"5/min"`, `"100/s"`, `"200/hour"` or `"3/10m"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: NonZeroU32,
    pub per: Duration,
}

impl Rate {
    /// A rate from literals; `count` must not be zero.
    pub const fn per(count: u32, per: Duration) -> Self {
        match NonZeroU32::new(count) {
            Some(count) => Self { count, per },
            None => panic!("a rate's count is at least 1"),
        }
    }

    /// The sustained rate in events per second.
    pub fn per_second(&self) -> f64 {
        f64::from(self.count.get()) / self.per.as_secs_f64()
    }
}

impl FromStr for Rate {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        let bad = || ValueError::Rate(s.to_owned());
        let (count, period) = s.split_once('/').ok_or_else(bad)?;
        let count: NonZeroU32 = count.trim().parse().map_err(|_| bad())?;
        let period = period.trim();
        // "min" alone means one minute; "10m" is a span of its own.
        let per = if period.starts_with(|c: char| c.is_ascii_digit()) {
            humantime::parse_duration(period)
        } else {
            humantime::parse_duration(&format!("1{period}"))
        }
        .map_err(|_| bad())?;
        if per.is_zero() {
            return Err(bad());
        }
        Ok(Self { count, per })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.count, humantime::format_duration(self.per))
    }
}

/// An upstream base: `http(s)://authority[/base-path]`, no query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamUrl {
    pub scheme: Scheme,
    pub authority: http::uri::Authority,
    /// Prepended to the request path; empty or starting with `/`, never ending with `/`.
    pub base_path: String,
    /// `authority` as the `Host` header sent upstream (made once, not per request).
    pub host: http::HeaderValue,
}

impl FromStr for UpstreamUrl {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        let bad = || ValueError::Url(s.to_owned());
        let uri: Uri = s.parse().map_err(|_| bad())?;
        let scheme = uri.scheme().cloned().ok_or_else(bad)?;
        if scheme != Scheme::HTTP && scheme != Scheme::HTTPS {
            return Err(bad());
        }
        let authority = uri.authority().cloned().ok_or_else(bad)?;
        if authority.host().is_empty() || authority.as_str().contains('@') {
            return Err(ValueError::UrlUserInfo(s.to_owned()));
        }
        if uri.query().is_some() {
            return Err(ValueError::UrlQuery(s.to_owned()));
        }
        let base_path = uri.path().trim_end_matches('/').to_owned();
        let host = http::HeaderValue::from_str(authority.as_str()).map_err(|_| bad())?;
        Ok(Self { scheme, authority, base_path, host })
    }
}

impl fmt::Display for UpstreamUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.authority, self.base_path)
    }
}

/// What keypin adds to an authenticated request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Inject {
    /// `Authorization: Basic base64(user:password)`.
    Basic,
    /// The route's `user_header` with the username.
    Header,
    Both,
}

impl Inject {
    pub fn basic(self) -> bool {
        matches!(self, Self::Basic | Self::Both)
    }
    pub fn header(self) -> bool {
        matches!(self, Self::Header | Self::Both)
    }
}

deserialize_via_from_str!(Rate, UpstreamUrl, LimitStoreKind);
