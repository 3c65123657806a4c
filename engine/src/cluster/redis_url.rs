//! What the `redis` setting names: one Redis (`redis://`), a master found through a set of
//! Sentinels (`redis+sentinel://`), or a Redis Cluster (`redis+cluster://`). Pure: text in, a
//! [`RedisTarget`] or a reason out.
//!
//! ```text
//! redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]
//! redis+sentinel://[[USER]:PASSWORD@]HOST[:PORT][,HOST[:PORT]...]/MASTER_NAME[/DB]
//!     [?sentinel_username=USER&sentinel_password=PASSWORD]
//! redis+cluster://[[USER]:PASSWORD@]HOST[:PORT][,HOST[:PORT]...][/]
//! ```
//!
//! `rediss://`, `rediss+sentinel://` and `rediss+cluster://` are the same over TLS (to the
//! Sentinels and every cluster node as well). A cluster URL names seed nodes: the others are
//! discovered from them; a cluster has database 0 only, and a node's port defaults to 6379.
//!
//! In a Sentinel URL the credentials before `@` are the master's (and its replicas'), those in
//! the query the Sentinels' own (most Sentinel sets have none); a Sentinel's port defaults to
//! 26379. User names and passwords may be percent-encoded.

use percent_encoding::percent_decode_str;

/// A Sentinel's port when the URL names none.
pub(crate) const SENTINEL_PORT: u16 = 26379;
/// A cluster node's port when the URL names none.
const CLUSTER_PORT: u16 = 6379;

/// Where the backplane connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RedisTarget {
    /// One Redis server, as the `redis` crate reads a `redis://` URL.
    Single(String),
    /// The master named `master` of a set of Sentinels.
    Sentinel(SentinelTarget),
    /// A Redis Cluster, found from its seed nodes.
    Cluster(ClusterTarget),
}

/// A `redis+cluster://` URL, read. Its `Debug` shows no password.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct ClusterTarget {
    /// The seed nodes, in the order the URL lists them.
    pub seeds: Vec<(String, u16)>,
    /// Every node's credentials (a cluster shares its users).
    pub username: Option<String>,
    pub password: Option<String>,
    /// `rediss+cluster://`: every connection is encrypted.
    pub tls: bool,
}

impl std::fmt::Debug for ClusterTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterTarget")
            .field("seeds", &self.seeds)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("tls", &self.tls)
            .finish()
    }
}

/// A `redis+sentinel://` URL, read. Its `Debug` shows no password.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct SentinelTarget {
    /// The Sentinels, in the order the URL lists them.
    pub sentinels: Vec<(String, u16)>,
    /// The name the Sentinels know the master by.
    pub master: String,
    /// The database to `SELECT` on the master.
    pub db: i64,
    /// The master's credentials.
    pub username: Option<String>,
    pub password: Option<String>,
    /// The Sentinels' credentials.
    pub sentinel_username: Option<String>,
    pub sentinel_password: Option<String>,
    /// `rediss+sentinel://`: every connection (to the Sentinels too) is encrypted.
    pub tls: bool,
}

impl std::fmt::Debug for SentinelTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |password: &Option<String>| password.as_ref().map(|_| "***");
        f.debug_struct("SentinelTarget")
            .field("sentinels", &self.sentinels)
            .field("master", &self.master)
            .field("db", &self.db)
            .field("username", &self.username)
            .field("password", &hidden(&self.password))
            .field("sentinel_username", &self.sentinel_username)
            .field("sentinel_password", &hidden(&self.sentinel_password))
            .field("tls", &self.tls)
            .finish()
    }
}

/// Reads `url`.
///
/// # Errors
///
/// Why `url` is not something the backplane can connect to, in words fit for the user.
pub(crate) fn parse(url: &str) -> Result<RedisTarget, String> {
    let (scheme, rest) =
        url.split_once("://").ok_or_else(|| format!("`{}` is not a Redis URL", redact(url)))?;
    match scheme {
        "redis" | "rediss" => {
            redis::Client::open(url).map_err(|e| format!("`{}` is not a Redis URL: {e}", redact(url)))?;
            Ok(RedisTarget::Single(url.to_owned()))
        }
        "redis+sentinel" => parse_sentinel(rest, false).map(RedisTarget::Sentinel),
        "rediss+sentinel" => parse_sentinel(rest, true).map(RedisTarget::Sentinel),
        "redis+cluster" => parse_cluster(rest, false).map(RedisTarget::Cluster),
        "rediss+cluster" => parse_cluster(rest, true).map(RedisTarget::Cluster),
        "unix" | "redis+unix" => {
            Err("cluster mode connects to Redis over TCP: use a redis://host:port URL".into())
        }
        _ => Err(format!(
            "`{}` is not a Redis URL (redis://, redis+sentinel:// or redis+cluster://)",
            redact(url)
        )),
    }
}

/// The credentials before the last `@` of an authority, and the hosts after it.
fn credentials_and_hosts(authority: &str) -> Result<(Option<String>, Option<String>, &str), String> {
    let Some((credentials, hosts)) = authority.rsplit_once('@') else { return Ok((None, None, authority)) };
    let (user, password) = credentials.split_once(':').unwrap_or((credentials, ""));
    Ok((non_empty(decode(user)?), non_empty(decode(password)?), hosts))
}

fn parse_cluster(rest: &str, tls: bool) -> Result<ClusterTarget, String> {
    let usage = "a cluster URL is redis+cluster://[USER:PASSWORD@]HOST[:PORT][,HOST[:PORT]...]";
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    if !path.is_empty() {
        return Err(format!(
            "`/{path}`: a Redis Cluster has database 0 only and takes no parameters: {usage}"
        ));
    }
    let (username, password, hosts) = credentials_and_hosts(authority)?;
    let mut seeds = Vec::new();
    for host in hosts.split(',') {
        seeds.push(host_port(host, CLUSTER_PORT).map_err(|e| format!("{e}: {usage}"))?);
    }
    Ok(ClusterTarget { seeds, username, password, tls })
}

fn parse_sentinel(rest: &str, tls: bool) -> Result<SentinelTarget, String> {
    let usage =
        "a Sentinel URL is redis+sentinel://[USER:PASSWORD@]HOST[:PORT][,HOST[:PORT]...]/MASTER_NAME[/DB]";
    let (before_query, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, path) = before_query.split_once('/').ok_or_else(|| format!("no master name: {usage}"))?;
    let (username, password, hosts) = credentials_and_hosts(authority)?;
    let mut sentinels = Vec::new();
    for host in hosts.split(',') {
        sentinels.push(host_port(host, SENTINEL_PORT).map_err(|e| format!("{e}: {usage}"))?);
    }
    let mut segments = path.split('/');
    let master = decode(segments.next().unwrap_or(""))?;
    if master.is_empty() {
        return Err(format!("no master name: {usage}"));
    }
    let db = match segments.next() {
        None | Some("") => 0,
        Some(db) => match db.parse::<u16>() {
            Ok(db) => i64::from(db),
            Err(_) => return Err(format!("the database `{db}` is not a number from 0: {usage}")),
        },
    };
    if segments.next().is_some_and(|s| !s.is_empty()) {
        return Err(format!("too many path segments: {usage}"));
    }
    let (mut sentinel_username, mut sentinel_password) = (None, None);
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "sentinel_username" => sentinel_username = non_empty(decode(value)?),
            "sentinel_password" => sentinel_password = non_empty(decode(value)?),
            _ => return Err(format!("unknown parameter `{key}` (sentinel_username, sentinel_password)")),
        }
    }
    Ok(SentinelTarget {
        sentinels,
        master,
        db,
        username,
        password,
        sentinel_username,
        sentinel_password,
        tls,
    })
}

fn host_port(text: &str, default_port: u16) -> Result<(String, u16), String> {
    let (host, port) = match text.rsplit_once(':') {
        // `[::1]:26379`, `host:26379`; a bare IPv6 address needs its brackets.
        Some((host, port)) if !host.is_empty() && (!host.contains(':') || host.ends_with(']')) => {
            match port.parse::<u16>() {
                Ok(port) if port > 0 => (host, port),
                _ => return Err(format!("`{text}`: the port is not a number from 1 to 65535")),
            }
        }
        _ => (text, default_port),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err("a server without a host".into());
    }
    Ok((host.to_owned(), port))
}

fn decode(text: &str) -> Result<String, String> {
    percent_decode_str(text)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| "credentials are not UTF-8".into())
}

fn non_empty(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

/// `url` with every password in it (between `USER:` and the `@` before the host, and
/// `sentinel_password=`) replaced by `***`: fit for logs and error messages. A password with
/// characters a URL reserves (`#`, `/`, `@`) left unencoded is hidden whole too.
pub(crate) fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else { return url.to_owned() };
    let rest = &url[scheme_end..];
    // The credentials end at the last `@` before the query (a query's own `@` is no end).
    let before_query = rest.find('?').unwrap_or(rest.len());
    let mut out = match rest[..before_query].rfind('@') {
        Some(at) => match rest[..at].find(':') {
            Some(colon) => format!("{}***{}", &url[..scheme_end + colon + 1], &rest[at..]),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    };
    let key = "sentinel_password=";
    let mut from = 0;
    while let Some(start) = out[from..].find(key).map(|i| from + i + key.len()) {
        let end = out[start..].find('&').map_or(out.len(), |i| start + i);
        out.replace_range(start..end, "***");
        from = start + 3;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_redis_is_what_the_redis_crate_reads() {
        assert_eq!(
            parse("redis://127.0.0.1:6379/2").unwrap(),
            RedisTarget::Single("redis://127.0.0.1:6379/2".into())
        );
        assert!(parse("redis://").is_err());
    }

    #[test]
    fn a_sentinel_set_with_its_master_database_and_credentials() {
        let url = "redis+sentinel://app:p%40ss@s1:26380,s2,[::1]:26381/mymaster/3?sentinel_password=s%26cret";
        let RedisTarget::Sentinel(target) = parse(url).unwrap() else { panic!("not a Sentinel target") };
        assert_eq!(
            target,
            SentinelTarget {
                sentinels: vec![("s1".into(), 26380), ("s2".into(), SENTINEL_PORT), ("::1".into(), 26381)],
                master: "mymaster".into(),
                db: 3,
                username: Some("app".into()),
                password: Some("p@ss".into()),
                sentinel_username: None,
                sentinel_password: Some("s&cret".into()),
                tls: false,
            }
        );
        let RedisTarget::Sentinel(secure) = parse("rediss+sentinel://h/m").unwrap() else {
            panic!("not a Sentinel target")
        };
        assert!(secure.tls);
        let shown = format!("{target:?}");
        assert!(!shown.contains("p@ss") && !shown.contains("s&cret"), "{shown}");
        let RedisTarget::Sentinel(plain) = parse("redis+sentinel://127.0.0.1:26379/m").unwrap() else {
            panic!("not a Sentinel target")
        };
        assert_eq!((plain.db, plain.password, plain.username), (0, None, None));
        let RedisTarget::Sentinel(password_only) = parse("redis+sentinel://:pw@h/m").unwrap() else {
            panic!("not a Sentinel target")
        };
        assert_eq!((password_only.username, password_only.password), (None, Some("pw".into())));
    }

    #[test]
    fn a_cluster_by_its_seed_nodes_with_credentials() {
        let url = "redis+cluster://app:p%40ss@h1:7000,h2,[::1]:7002/";
        let RedisTarget::Cluster(target) = parse(url).unwrap() else { panic!("not a cluster target") };
        assert_eq!(
            target,
            ClusterTarget {
                seeds: vec![("h1".into(), 7000), ("h2".into(), CLUSTER_PORT), ("::1".into(), 7002)],
                username: Some("app".into()),
                password: Some("p@ss".into()),
                tls: false,
            }
        );
        assert!(!format!("{target:?}").contains("p@ss"));
        let RedisTarget::Cluster(secure) = parse("rediss+cluster://h:7000").unwrap() else {
            panic!("not a cluster target")
        };
        assert_eq!((secure.tls, secure.password, secure.seeds.len()), (true, None, 1));
        assert_eq!(redact(url), "redis+cluster://app:***@h1:7000,h2,[::1]:7002/");
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        let reason = |url: &str| parse(url).unwrap_err();
        assert!(
            reason("redis+sentinel://h1,h2").contains("no master name"),
            "{}",
            reason("redis+sentinel://h1")
        );
        assert!(reason("redis+sentinel://h1/").contains("no master name"));
        assert!(reason("redis+sentinel://h1:port/m").contains("the port is not a number"));
        assert!(reason("redis+sentinel://h1:0/m").contains("the port is not a number"));
        assert!(reason("redis+sentinel://h1/m/-1").contains("is not a number"));
        assert!(reason("redis+sentinel://h1,,h2/m").contains("without a host"));
        assert!(reason("redis+sentinel://h1/m/x").contains("is not a number"));
        assert!(reason("redis+sentinel://h1/m?password=x").contains("unknown parameter `password`"));
        assert!(parse("rediss://h:6379").is_ok());
        assert!(reason("redis+cluster://h:7000/0").contains("database 0 only"));
        assert!(reason("redis+cluster://h:x").contains("the port is not a number"));
        assert!(reason("redis+cluster://h1,,h2").contains("without a host"));
        assert!(reason("unix:///run/redis.sock").contains("over TCP"));
        assert!(reason("http://h").contains("not a Redis URL"));
        assert!(reason("notaurl").contains("not a Redis URL"));
    }

    #[test]
    fn passwords_are_not_logged() {
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(redact("redis://:s3cret@10.0.0.1:6379/0"), "redis://:***@10.0.0.1:6379/0");
        assert_eq!(redact("redis://user:p@ss@host"), "redis://user:***@host");
        assert_eq!(redact("redis://user@host:6379"), "redis://user@host:6379");
        assert_eq!(redact("unix:///run/redis.sock"), "unix:///run/redis.sock");
        assert_eq!(redact("notaurl"), "notaurl");
        assert_eq!(
            redact("redis+sentinel://u:pw@s1,s2/m?sentinel_username=x&sentinel_password=secret"),
            "redis+sentinel://u:***@s1,s2/m?sentinel_username=x&sentinel_password=***"
        );
        assert_eq!(
            redact("redis+sentinel://s1/m?sentinel_password=secret&x=1"),
            "redis+sentinel://s1/m?sentinel_password=***&x=1"
        );
        // Reserved characters left unencoded in a password still hide it whole.
        assert_eq!(redact("redis://:p#w@host:6379"), "redis://:***@host:6379");
        assert_eq!(redact("redis://:ab/cd@host"), "redis://:***@host");
        assert_eq!(
            redact("redis+sentinel://s/m?sentinel_password=a&sentinel_password=b"),
            "redis+sentinel://s/m?sentinel_password=***&sentinel_password=***"
        );
        assert_eq!(
            redact("redis+sentinel://s/m?sentinel_password=a@b"),
            "redis+sentinel://s/m?sentinel_password=***"
        );
    }
}
