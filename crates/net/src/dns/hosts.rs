//! `/etc/hosts`: parsed by hand (no maintained crate parses it without a runtime attached) and
//! re-read when the file changes, as glibc's `files` backend sees edits at once.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// How often the hosts file's modification time is checked.
const RECHECK: Duration = Duration::from_secs(1);

/// A parsed hosts file: each name (case-insensitive, aliases included) with its addresses in
/// file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hosts {
    by_name: HashMap<String, Vec<IpAddr>>,
}

fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl Hosts {
    /// Where the system's hosts file lives unless `GREEN_HOSTS` says otherwise.
    pub const DEFAULT_PATH: &'static str = "/etc/hosts";

    /// Parses hosts-file text: `address name [aliases…]` per line, `#` starts a comment; lines
    /// with an invalid address are skipped. An IPv6 zone (`fe80::1%eth0`) is dropped.
    pub fn parse(text: &str) -> Hosts {
        let mut hosts = Hosts::default();
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("");
            let mut fields = line.split_whitespace();
            let Some(addr) = fields.next() else { continue };
            let addr = addr.split('%').next().unwrap_or(addr);
            let Ok(ip) = addr.parse::<IpAddr>() else {
                continue;
            };
            for name in fields {
                hosts.insert(name, ip);
            }
        }
        hosts
    }

    /// Reads and parses a hosts file.
    pub fn from_file(path: impl AsRef<Path>) -> io::Result<Hosts> {
        let bytes = fs::read(path)?;
        Ok(Hosts::parse(&String::from_utf8_lossy(&bytes)))
    }

    /// Adds an address for `name` (kept once, after the ones already there).
    pub fn insert(&mut self, name: &str, ip: IpAddr) {
        let ips = self.by_name.entry(key(name)).or_default();
        if !ips.contains(&ip) {
            ips.push(ip);
        }
    }

    /// The addresses of `name` (case-insensitive, a trailing dot ignored), if listed.
    pub fn lookup(&self, name: &str) -> Option<&[IpAddr]> {
        self.by_name.get(&key(name)).map(Vec::as_slice)
    }

    /// How many names are listed.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether no name is listed.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

/// Where a native resolver gets its hosts table.
pub(crate) enum HostsSource {
    /// No hosts table: every name goes to DNS.
    None,
    /// A fixed table.
    Fixed(Arc<Hosts>),
    /// A file, re-read when its modification time changes (checked at most once a second).
    File(PathBuf, Mutex<Watched>),
}

pub(crate) struct Watched {
    hosts: Arc<Hosts>,
    modified: Option<SystemTime>,
    checked: Instant,
}

impl fmt::Debug for HostsSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostsSource::None => f.write_str("None"),
            HostsSource::Fixed(hosts) => write!(f, "Fixed({} names)", hosts.len()),
            HostsSource::File(path, _) => write!(f, "File({path:?})"),
        }
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl HostsSource {
    /// Watches `path` (a missing file is an empty table until it appears).
    pub(crate) fn file(path: PathBuf) -> HostsSource {
        let watched = Watched {
            hosts: Arc::new(Hosts::from_file(&path).unwrap_or_default()),
            modified: modified(&path),
            checked: Instant::now(),
        };
        HostsSource::File(path, Mutex::new(watched))
    }

    /// The system's hosts file: `GREEN_HOSTS` or `/etc/hosts`.
    pub(crate) fn system() -> HostsSource {
        let path = std::env::var_os("GREEN_HOSTS")
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| Hosts::DEFAULT_PATH.into());
        HostsSource::file(path.into())
    }

    /// The current table.
    pub(crate) fn hosts(&self) -> Option<Arc<Hosts>> {
        match self {
            HostsSource::None => None,
            HostsSource::Fixed(hosts) => Some(hosts.clone()),
            HostsSource::File(path, watched) => {
                let mut watched = watched.lock().unwrap_or_else(|e| e.into_inner());
                if watched.checked.elapsed() >= RECHECK {
                    watched.checked = Instant::now();
                    let now = modified(path);
                    if now != watched.modified {
                        watched.modified = now;
                        watched.hosts = Arc::new(Hosts::from_file(path).unwrap_or_default());
                    }
                }
                Some(watched.hosts.clone())
            }
        }
    }
}
