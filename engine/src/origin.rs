//! Which web pages may open sockets: the `Origin` a browser sends with every upgrade,
//! compared with [`Config::allowed_origins`](crate::Config::allowed_origins).
//!
//! Origins are compared as `scheme://host[:port]`, with the scheme and host lower-cased
//! and the scheme's default port (80 for http, 443 for https) dropped, so
//! `HTTPS://App.Example.com:443` and `https://app.example.com` are the same origin.

/// An allow-list of origins, normalized once.
#[derive(Debug, Clone)]
pub(crate) struct AllowedOrigins {
    origins: Vec<String>,
}

impl AllowedOrigins {
    /// The list, each entry normalized.
    ///
    /// # Errors
    ///
    /// The first entry that is not an origin, with why.
    pub fn new(origins: &[String]) -> Result<AllowedOrigins, String> {
        let origins = origins.iter().map(|origin| normalize(origin)).collect::<Result<_, _>>()?;
        Ok(AllowedOrigins { origins })
    }

    /// Whether a request with this `Origin` header may upgrade. Requests without one come
    /// from non-browser clients, which could send any Origin they like: the check protects
    /// browser users from other sites' pages, and authentication protects the rest.
    pub fn allows(&self, origin: Option<&str>) -> bool {
        match origin {
            None => true,
            Some(origin) => normalize(origin).is_ok_and(|origin| self.origins.contains(&origin)),
        }
    }
}

/// `scheme://host[:port]`, lower-cased, without the scheme's default port.
///
/// # Errors
///
/// Why `origin` is not an origin (no scheme, a path, an empty host, `null`).
pub(crate) fn normalize(origin: &str) -> Result<String, String> {
    let origin = origin.trim();
    let (scheme, rest) = origin
        .split_once("://")
        .ok_or_else(|| format!("`{origin}` is not an origin like https://example.com"))?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme.is_empty() || !scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b)) {
        return Err(format!("`{origin}` has no valid scheme"));
    }
    // A trailing slash is tolerated in the configuration; anything more is a path.
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty()
        || authority.contains(['/', '?', '#', '@'])
        || authority.contains(char::is_whitespace)
    {
        return Err(format!("`{origin}` must be scheme://host[:port], without a path or user"));
    }
    let authority = authority.to_ascii_lowercase();
    let (host, port) = match authority.rsplit_once(':') {
        // `[::1]` alone has colons but no port.
        Some((host, port)) if !port.contains(']') => (host, Some(port)),
        _ => (authority.as_str(), None),
    };
    if host.is_empty() {
        return Err(format!("`{origin}` has an empty host"));
    }
    let default_port = match scheme.as_str() {
        "http" | "ws" => Some("80"),
        "https" | "wss" => Some("443"),
        _ => None,
    };
    match port {
        Some(port) if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) => {
            Err(format!("`{origin}` has an invalid port"))
        }
        Some(port) if Some(port) != default_port => Ok(format!("{scheme}://{host}:{port}")),
        _ => Ok(format!("{scheme}://{host}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_normalize() {
        assert_eq!(normalize("https://example.com").unwrap(), "https://example.com");
        assert_eq!(normalize("HTTPS://App.Example.COM:443").unwrap(), "https://app.example.com");
        assert_eq!(normalize("http://example.com:80/").unwrap(), "http://example.com");
        assert_eq!(normalize("http://example.com:8080").unwrap(), "http://example.com:8080");
        assert_eq!(normalize("http://[::1]:3000").unwrap(), "http://[::1]:3000");
        assert_eq!(normalize("http://[::1]").unwrap(), "http://[::1]");
        for bad in
            ["example.com", "null", "https://", "https://example.com/app", "://x", "https://a b", "http://x:"]
        {
            assert!(normalize(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_listed_origins_and_non_browsers_are_allowed() {
        let allowed =
            AllowedOrigins::new(&["https://app.example.com".into(), "http://localhost:3000".into()]).unwrap();
        assert!(allowed.allows(None));
        assert!(allowed.allows(Some("https://app.example.com")));
        assert!(allowed.allows(Some("https://APP.example.com:443")));
        assert!(allowed.allows(Some("http://localhost:3000")));
        assert!(!allowed.allows(Some("http://localhost:3001")));
        assert!(!allowed.allows(Some("http://app.example.com")));
        assert!(!allowed.allows(Some("https://app.example.com.evil.example")));
        assert!(!allowed.allows(Some("null")));
        assert!(!allowed.allows(Some("")));
        assert!(AllowedOrigins::new(&["https://ok.example".into(), "nope".into()]).is_err());
    }
}
