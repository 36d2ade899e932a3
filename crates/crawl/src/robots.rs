//! robots.txt: which URLs of a site the crawler may fetch.
//!
//! Parsing and matching are `texting_robots`'s (tested against Google's and reppy's suites):
//! rules become regular expressions, so matching is linear in the path whatever the wildcards
//! (a hand-written backtracking matcher took ~55 s for `Disallow: /*a*a*a*a*a*b` against a
//! 200-character path, on the hub, stalling every worker), and the agent's group is chosen by
//! its exact product token (an empty `User-agent:` line matches nobody).

use std::fmt;

use green_http::client::Url;

/// The rules of the robots.txt group that applies to one agent (its own group, else `*`): the
/// longest matching `Allow`/`Disallow` pattern wins, `Allow` on a tie; `*` and `$` as Google
/// defines them. A file that does not parse allows everything.
#[derive(Default)]
pub struct Robots {
    robot: Option<texting_robots::Robot>,
}

impl fmt::Debug for Robots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Robots")
            .field("rules", &self.robot.is_some())
            .finish()
    }
}

impl Robots {
    /// Parses robots.txt for `agent`, a product token compared case-insensitively
    /// (`green-crawl`, not `green-crawl/0.1`).
    pub fn parse(text: &str, agent: &str) -> Robots {
        Robots {
            robot: texting_robots::Robot::new(agent, text.as_bytes()).ok(),
        }
    }

    /// Whether `path` (path and query, such as [`robots_path`] gives; a whole URL works too)
    /// may be fetched.
    pub fn allows(&self, path: &str) -> bool {
        self.robot.as_ref().is_none_or(|robot| robot.allowed(path))
    }

    /// Whether `url` may be fetched.
    pub fn allows_url(&self, url: &Url) -> bool {
        self.allows(robots_path(url))
    }

    /// The `Crawl-delay` the file asks of this agent, in seconds.
    pub fn crawl_delay(&self) -> Option<f32> {
        self.robot.as_ref().and_then(|robot| robot.delay)
    }
}

/// The part of a URL robots.txt rules match: path and query (never the fragment).
pub fn robots_path(url: &Url) -> &str {
    let start = url.as_str().len()
        - url.fragment().map_or(0, |f| f.len() + 1)
        - url.query().map_or(0, |q| q.len() + 1)
        - url.path().len();
    let end = url.as_str().len() - url.fragment().map_or(0, |f| f.len() + 1);
    &url.as_str()[start..end]
}
