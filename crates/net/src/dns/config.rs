//! The stub resolver's configuration: `/etc/resolv.conf` (parsed by `resolv-conf`) with glibc's
//! environment overrides and green's own.
//!
//! glibc's rules are kept where they matter to users: a file with no `nameserver` means the local
//! host, the last `search` or `domain` line wins, unknown options are ignored, `LOCALDOMAIN`
//! replaces the search list and `RES_OPTIONS` is applied over the file's options. glibc's limits
//! hold too (`ndots` ≤ 15, `timeout` ≤ 30 s, 1 ≤ `attempts` ≤ 5).

use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::path::Path;
use std::time::Duration;

/// The port DNS servers listen on unless told otherwise.
const DNS_PORT: u16 = 53;
const MAX_NDOTS: u32 = 15;
const MAX_TIMEOUT_SECS: u32 = 30;
const MAX_ATTEMPTS: u32 = 5;

/// What `/etc/resolv.conf` says, after the environment's overrides: the servers to ask, the
/// search list and the options the stub resolver honours.
///
/// `#[non_exhaustive]`: start from [`ResolvConf::default`], [`ResolvConf::parse`] or
/// [`ResolvConf::from_system`] and change fields.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvConf {
    /// The servers, asked in this order (`nameserver`; default: 127.0.0.1 and ::1, port 53).
    pub nameservers: Vec<SocketAddr>,
    /// Domains appended to a name with fewer than `ndots` dots (`search` or `domain`).
    pub search: Vec<String>,
    /// A name with at least this many dots is tried as is before the search list
    /// (`options ndots:n`, default 1).
    pub ndots: u32,
    /// How long to wait for one server's reply (`options timeout:n`, in seconds; default 5).
    pub timeout: Duration,
    /// How many rounds over the server list (`options attempts:n`, default 2).
    pub attempts: u32,
    /// Start each query at the next server instead of the first (`options rotate`).
    pub rotate: bool,
}

impl Default for ResolvConf {
    fn default() -> ResolvConf {
        ResolvConf {
            nameservers: local_servers(),
            search: Vec::new(),
            ndots: 1,
            timeout: Duration::from_secs(5),
            attempts: 2,
            rotate: false,
        }
    }
}

fn local_servers() -> Vec<SocketAddr> {
    vec![
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), DNS_PORT),
        SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), DNS_PORT),
    ]
}

impl ResolvConf {
    /// Where the system's configuration lives unless `GREEN_RESOLV_CONF` says otherwise.
    pub const DEFAULT_PATH: &'static str = "/etc/resolv.conf";

    /// Parses resolv.conf text. Lines it does not understand are ignored, as glibc does.
    pub fn parse(text: &str) -> ResolvConf {
        let (parsed, _errors) = resolv_conf::Config::parse_with_errors(text.as_bytes());
        let mut conf = ResolvConf::default();
        let servers: Vec<SocketAddr> = parsed
            .nameservers
            .iter()
            .map(|server| match server {
                resolv_conf::ScopedIp::V4(ip) => SocketAddr::new(IpAddr::V4(*ip), DNS_PORT),
                resolv_conf::ScopedIp::V6(ip, scope) => {
                    let scope_id = scope.as_deref().and_then(|s| s.parse().ok()).unwrap_or(0);
                    SocketAddr::V6(SocketAddrV6::new(*ip, DNS_PORT, 0, scope_id))
                }
            })
            .collect();
        if !servers.is_empty() {
            conf.nameservers = servers;
        }
        conf.search = parsed
            .get_last_search_or_domain()
            .map(|d| d.trim_end_matches('.').to_string())
            .filter(|d| !d.is_empty())
            .collect();
        conf.ndots = parsed.ndots.min(MAX_NDOTS);
        conf.timeout = Duration::from_secs(u64::from(parsed.timeout.clamp(1, MAX_TIMEOUT_SECS)));
        conf.attempts = parsed.attempts.clamp(1, MAX_ATTEMPTS);
        conf.rotate = parsed.rotate;
        conf
    }

    /// Reads and parses a resolv.conf file.
    pub fn from_file(path: impl AsRef<Path>) -> io::Result<ResolvConf> {
        let bytes = fs::read(path)?;
        Ok(ResolvConf::parse(&String::from_utf8_lossy(&bytes)))
    }

    /// The system's configuration: `GREEN_RESOLV_CONF` or `/etc/resolv.conf` (defaults if it
    /// cannot be read), then [`apply_env`](ResolvConf::apply_env) with the process environment.
    pub fn from_system() -> ResolvConf {
        let chosen = std::env::var_os("GREEN_RESOLV_CONF").filter(|p| !p.is_empty());
        let path = chosen
            .clone()
            .unwrap_or_else(|| ResolvConf::DEFAULT_PATH.into());
        let mut conf = ResolvConf::from_file(&path).unwrap_or_else(|err| {
            if chosen.is_some() {
                log::warn!("cannot read GREEN_RESOLV_CONF={path:?} ({err}); using defaults");
            }
            ResolvConf::default()
        });
        conf.apply_env(|name| std::env::var(name).ok());
        conf
    }

    /// Applies the overrides found through `var` (a lookup such as `std::env::var(..).ok()`):
    /// `LOCALDOMAIN` (the search list, blank-separated), `RES_OPTIONS` (see
    /// [`apply_options`](ResolvConf::apply_options)) and `GREEN_NAMESERVERS` (see
    /// [`parse_nameservers`](ResolvConf::parse_nameservers); an invalid list is reported on
    /// stderr and ignored).
    pub fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) {
        if let Some(domains) = var("LOCALDOMAIN") {
            self.search = domains
                .split_whitespace()
                .map(|d| d.trim_end_matches('.').to_string())
                .filter(|d| !d.is_empty())
                .collect();
        }
        if let Some(options) = var("RES_OPTIONS") {
            self.apply_options(&options);
        }
        if let Some(list) = var("GREEN_NAMESERVERS").filter(|l| !l.trim().is_empty()) {
            match ResolvConf::parse_nameservers(&list) {
                Ok(servers) => self.nameservers = servers,
                Err(err) => log::warn!("ignoring GREEN_NAMESERVERS={list:?}: {err}"),
            }
        }
    }

    /// Applies options in resolv.conf's `options` syntax (`"ndots:2 timeout:1 attempts:3
    /// rotate"`), as `RES_OPTIONS` gives them; unknown or malformed ones are ignored.
    pub fn apply_options(&mut self, options: &str) {
        for option in options.split_whitespace() {
            let (key, value) = match option.split_once(':') {
                Some((key, value)) => (key, value.parse::<u32>().ok()),
                None => (option, None),
            };
            match (key, value) {
                ("ndots", Some(n)) => self.ndots = n.min(MAX_NDOTS),
                ("timeout", Some(n)) => {
                    self.timeout = Duration::from_secs(u64::from(n.clamp(1, MAX_TIMEOUT_SECS)))
                }
                ("attempts", Some(n)) => self.attempts = n.clamp(1, MAX_ATTEMPTS),
                ("rotate", _) => self.rotate = true,
                _ => {}
            }
        }
    }

    /// Parses a comma-separated server list: `127.0.0.1`, `127.0.0.1:5353`, `::1`,
    /// `[::1]:5353`; port 53 when none is given.
    pub fn parse_nameservers(list: &str) -> io::Result<Vec<SocketAddr>> {
        let servers = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|server| {
                server
                    .parse::<SocketAddr>()
                    .or_else(|_| {
                        server
                            .parse::<IpAddr>()
                            .map(|ip| SocketAddr::new(ip, DNS_PORT))
                    })
                    .map_err(|_| {
                        io::Error::new(
                            io::ErrorKind::InvalidInput,
                            format!("invalid name server {server:?}: expected IP or IP:port"),
                        )
                    })
            })
            .collect::<io::Result<Vec<_>>>()?;
        if servers.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "empty name server list",
            ));
        }
        Ok(servers)
    }
}
