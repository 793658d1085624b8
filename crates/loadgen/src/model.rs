//! The traffic model: what a day of a hosted-analytics customer base looks like, reduced to
//! the parts that cost the collector and the processor something.
//!
//! - **Sites** have power-law sizes: site `i` (0-based) gets weight `1 / (i + 1)` (Zipf with
//!   exponent 1, the usual shape of web traffic across sites; Adamic & Huberman, "Zipf's law
//!   and the Internet", Glottometrics 3, 2002).
//! - **Visitors** return: a new visit is by a recent visitor of the site with probability
//!   [`RETURNING`], otherwise by a new one.
//! - **Visits** have several pageviews: a bounce (one pageview) with probability [`BOUNCE`],
//!   otherwise 2 plus a geometric number with mean 2. Pages follow Zipf over the site's
//!   catalogue. One visit in ten ends with a `Signup` goal carrying revenue.
//! - **Clients** use real User-Agent strings of current browsers ([`USER_AGENTS`]), arrive
//!   from real referrers or newsletter UTM tags ([`REFERRERS`]), and have IPv4 addresses
//!   spread over the public space (sent as `X-Forwarded-For`; the benchmark's server trusts
//!   loopback as its proxy).
//!
//! Randomness is a seeded xorshift generator, so a run is reproducible from its seed.

use std::net::Ipv4Addr;

/// Probability that a visit is by a returning visitor.
pub const RETURNING: f64 = 0.3;
/// Probability that a visit is a bounce (one pageview).
pub const BOUNCE: f64 = 0.45;
/// Distinct pages per site.
pub const PAGES: u64 = 400;

/// Real User-Agent strings of current desktop and mobile browsers (as sent by Chrome, Safari,
/// Firefox, Edge and Samsung Internet in 2024).
pub const USER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.0.0",
    "Mozilla/5.0 (Linux; Android 13; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (iPad; CPU OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
];

/// Where visits come from: a referrer, and query parameters on the landing page.
pub const REFERRERS: &[(Option<&str>, &str)] = &[
    (None, ""),
    (None, ""),
    (Some("https://www.google.com/"), ""),
    (Some("https://www.google.com/"), ""),
    (Some("https://www.bing.com/"), ""),
    (Some("https://duckduckgo.com/"), ""),
    (Some("https://t.co/x1y2z3"), ""),
    (Some("https://www.facebook.com/"), ""),
    (Some("https://news.ycombinator.com/item?id=1"), ""),
    (
        None,
        "?utm_source=newsletter&utm_medium=email&utm_campaign=spring",
    ),
    (Some("https://www.google.com/"), "?gclid=abc123"),
];

/// A seeded xorshift64* generator (Vigna, "An experimental exploration of Marsaglia's
/// xorshift generators, scrambled", ACM TOMS 42(4), 2016): fast and good enough for traffic.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed (0 is replaced, the state must be non-zero).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A uniform float in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A uniform integer in [0, n); `n` must be at least 1.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// Cumulative Zipf(1) weights over `n` items, for [`pick`].
pub fn zipf_cdf(n: usize) -> Vec<f64> {
    let mut total = 0.0;
    let mut cdf: Vec<f64> = (0..n)
        .map(|i| {
            total += 1.0 / (i as f64 + 1.0);
            total
        })
        .collect();
    for c in &mut cdf {
        *c /= total;
    }
    cdf
}

/// An index drawn from cumulative weights.
pub fn pick(cdf: &[f64], rng: &mut Rng) -> usize {
    let u = rng.unit();
    cdf.partition_point(|c| *c <= u)
        .min(cdf.len().saturating_sub(1))
}

/// One hit: a pageview or a goal of one visitor on one site.
#[derive(Clone, Debug, PartialEq)]
pub struct Hit {
    /// Index of the site in the run's site list.
    pub site: usize,
    /// The visitor (stable across that visitor's visits).
    pub visitor: u64,
    /// Event name: `pageview` or `Signup`.
    pub name: &'static str,
    /// Page path and query, starting with `/`.
    pub path: String,
    /// The referrer, on a visit's first hit only.
    pub referrer: Option<&'static str>,
    /// Revenue in minor currency units (cents), on goals.
    pub revenue_cents: Option<u64>,
}

impl Hit {
    /// The visitor's User-Agent.
    pub fn user_agent(&self) -> &'static str {
        USER_AGENTS[(self.visitor % USER_AGENTS.len() as u64) as usize]
    }

    /// The visitor's IPv4 address: derived from the visitor id, first octet 11–99 so it is
    /// never loopback or in RFC 1918's 10/8.
    pub fn ip(&self) -> Ipv4Addr {
        let v = (self.visitor >> 16) as u32;
        let first = 11 + (self.visitor % 89) as u32;
        Ipv4Addr::from((first << 24) | (v & 0x00FF_FFFF))
    }
}

/// Generates hits visit by visit for a list of sites; one per worker.
#[derive(Debug)]
pub struct Traffic {
    rng: Rng,
    sites: Vec<f64>,
    pages: Vec<f64>,
    recent: Vec<Vec<u64>>,
    pending: std::collections::VecDeque<Hit>,
}

/// How many recent visitors per site can return.
const RECENT: usize = 2_000;

impl Traffic {
    /// A generator over `site_count` sites (power-law weights), seeded.
    pub fn new(site_count: usize, seed: u64) -> Traffic {
        Traffic {
            rng: Rng::new(seed),
            sites: zipf_cdf(site_count.max(1)),
            pages: zipf_cdf(PAGES as usize),
            recent: vec![Vec::new(); site_count.max(1)],
            pending: Default::default(),
        }
    }

    /// The next hit; a new visit starts when the current one has no hits left.
    pub fn next_hit(&mut self) -> Hit {
        if self.pending.is_empty() {
            self.new_visit();
        }
        self.pending.pop_front().unwrap_or_else(|| Hit {
            site: 0,
            visitor: 1,
            name: "pageview",
            path: "/".into(),
            referrer: None,
            revenue_cents: None,
        })
    }

    /// The next hit of a visit on site `site` only (for per-site streams such as access
    /// logs).
    pub fn next_hit_on(&mut self, site: usize) -> Hit {
        if self.pending.is_empty() {
            self.visit_on(site);
        }
        self.next_hit()
    }

    fn new_visit(&mut self) {
        let site = pick(&self.sites, &mut self.rng);
        self.visit_on(site);
    }

    fn visit_on(&mut self, site: usize) {
        let site = site.min(self.recent.len() - 1);
        let rng = &mut self.rng;
        let recent = &mut self.recent[site];
        let visitor = if !recent.is_empty() && rng.unit() < RETURNING {
            recent[rng.below(recent.len() as u64) as usize]
        } else {
            let v = rng.next_u64();
            if recent.len() < RECENT {
                recent.push(v);
            } else {
                let i = rng.below(RECENT as u64) as usize;
                recent[i] = v;
            }
            v
        };
        let pageviews = if rng.unit() < BOUNCE {
            1
        } else {
            // 2 + geometric with mean 2 (success probability 1/3).
            let mut n = 2;
            while rng.unit() < 2.0 / 3.0 && n < 50 {
                n += 1;
            }
            n
        };
        let (referrer, query) = REFERRERS[rng.below(REFERRERS.len() as u64) as usize];
        for i in 0..pageviews {
            let page = pick(&self.pages, rng);
            let path = match page {
                0 => "/".to_string(),
                p if p % 5 == 0 => format!("/blog/post-{p}"),
                p => format!("/products/item-{p}"),
            };
            let first = i == 0;
            self.pending.push_back(Hit {
                site,
                visitor,
                name: "pageview",
                path: if first {
                    format!("{path}{query}")
                } else {
                    path
                },
                referrer: referrer.filter(|_| first),
                revenue_cents: None,
            });
        }
        if rng.below(10) == 0 {
            self.pending.push_back(Hit {
                site,
                visitor,
                name: "Signup",
                path: "/signup".into(),
                referrer: None,
                revenue_cents: Some(500 + rng.below(10_000)),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_weights_are_one_over_rank() {
        // Weights 1, 1/2, 1/3 sum to 11/6: the cumulative shares are 6/11, 9/11, 1.
        let cdf = zipf_cdf(3);
        let expected = [6.0 / 11.0, 9.0 / 11.0, 1.0];
        for (c, e) in cdf.iter().zip(expected) {
            assert!((c - e).abs() < 1e-12, "{cdf:?}");
        }
    }

    #[test]
    fn traffic_has_the_modelled_shape() {
        let mut t = Traffic::new(10, 7);
        let hits: Vec<Hit> = (0..200_000).map(|_| t.next_hit()).collect();
        // Site 0 gets 1/H(10) = 34.1 % of visits; visits on big sites are not longer, so
        // its share of hits is close to that.
        let share = hits.iter().filter(|h| h.site == 0).count() as f64 / hits.len() as f64;
        assert!((0.31..0.37).contains(&share), "site 0 share {share}");
        // Landing hits carry the referrer; bounce visits make the mean visit length
        // 0.45 × 1 + 0.55 × 4 = 2.65 pageviews.
        let landings = hits
            .iter()
            .filter(|h| h.name == "pageview" && (h.referrer.is_some() || h.path.contains('?')))
            .count();
        assert!(landings > 0);
        let pageviews = hits.iter().filter(|h| h.name == "pageview").count() as f64;
        let goals = hits.iter().filter(|h| h.name == "Signup").count() as f64;
        // Goals come once per ten visits: visits ≈ 10 × goals; pageviews per visit ≈ 2.65.
        let per_visit = pageviews / (goals * 10.0);
        assert!(
            (2.3..3.0).contains(&per_visit),
            "pageviews per visit {per_visit}"
        );
        assert!(hits
            .iter()
            .all(|h| !h.ip().is_private() && !h.ip().is_loopback()));
    }

    #[test]
    fn the_same_seed_gives_the_same_traffic() {
        let mut a = Traffic::new(5, 42);
        let mut b = Traffic::new(5, 42);
        for _ in 0..1000 {
            assert_eq!(a.next_hit(), b.next_hit());
        }
    }
}
