//! Envoy's metrics as tests read them: the Prometheus text of `/stats/prometheus` (series by name and
//! labels) and the `name: value` lines of `/stats`.

use anyhow::{Context, Result};

/// One Prometheus sample line.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Series {
    fn has_labels(&self, wanted: &[(&str, &str)]) -> bool {
        wanted
            .iter()
            .all(|(k, v)| self.labels.iter().any(|(lk, lv)| lk == k && lv == v))
    }
}

/// A parsed `/stats/prometheus` scrape.
#[derive(Clone, Debug, Default)]
pub struct Prometheus {
    pub series: Vec<Series>,
}

impl Prometheus {
    pub fn parse(text: &str) -> Result<Self> {
        let series = text
            .lines()
            .enumerate()
            .filter(|(_, line)| !line.is_empty() && !line.starts_with('#'))
            .map(|(index, line)| {
                parse_sample(line)
                    .with_context(|| format!("prometheus line {}: {line:?}", index + 1))
            })
            .collect::<Result<_>>()?;
        Ok(Prometheus { series })
    }

    /// Every series named `name` whose labels include all of `labels`.
    pub fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Series> + 'a {
        self.series
            .iter()
            .filter(move |s| s.name == name && s.has_labels(labels))
    }

    /// The sum of the series named `name` whose labels include all of `labels` (so a subset of the
    /// labels adds up the rest), or `None` when there is no such series.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.matching(name, labels)
            .map(|s| s.value)
            .fold(None, |sum, v| Some(sum.unwrap_or(0.0) + v))
    }
}

fn parse_sample(line: &str) -> Result<Series> {
    let (name_and_labels, value) = line.rsplit_once(' ').context("no value after the series")?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other.parse().context("value is not a number")?,
    };
    let (name, labels) = match name_and_labels.split_once('{') {
        None => (name_and_labels, Vec::new()),
        Some((name, rest)) => {
            let body = rest
                .strip_suffix('}')
                .context("labels without a closing brace")?;
            (name, parse_labels(body)?)
        }
    };
    Ok(Series {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// `k="v",k2="v2"` with `\"`, `\\` and `\n` escapes inside values.
fn parse_labels(body: &str) -> Result<Vec<(String, String)>> {
    let mut labels = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"").context("label without =\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => anyhow::bail!("label value ends inside an escape"),
                },
                Some((_, c)) => value.push(c),
                None => anyhow::bail!("label value without a closing quote"),
            }
        };
        labels.push((key.trim_start_matches(',').to_owned(), value));
        rest = after[end + 1..].trim_start_matches(',');
    }
    Ok(labels)
}

/// A parsed `/stats` page (`name: value` lines; histogram lines are kept as text).
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub lines: Vec<(String, String)>,
}

impl Stats {
    pub fn parse(text: &str) -> Self {
        Stats {
            lines: text
                .lines()
                .filter_map(|line| line.split_once(": "))
                .map(|(name, value)| (name.to_owned(), value.to_owned()))
                .collect(),
        }
    }

    /// The raw value of a stat.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.lines
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of a counter or gauge.
    pub fn counter(&self, name: &str) -> Option<u64> {
        self.get(name).and_then(|v| v.parse().ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRAPE: &str = r#"# TYPE certgate_requests_total counter
certgate_requests_total{route="admin",decision="allow",reason="allowed"} 3
certgate_requests_total{route="admin",decision="deny",reason="not_in_allowlist"} 2
certgate_requests_total{route="app",decision="deny",reason="no_client_cert"} 1
envoy_server_live{} 1
certgate_peer_cert_days_to_expiry_bucket{le="+Inf"} 4
odd{v="a\"b\\c,d"} 7
"#;

    #[test]
    fn sums_series_matching_a_label_subset() {
        let scrape = Prometheus::parse(SCRAPE).unwrap();
        let deny = [("decision", "deny")];
        assert_eq!(scrape.value("certgate_requests_total", &deny), Some(3.0));
        let allowed = [("route", "admin"), ("decision", "allow")];
        assert_eq!(scrape.value("certgate_requests_total", &allowed), Some(3.0));
        assert_eq!(scrape.value("certgate_requests_total", &[]), Some(6.0));
        assert_eq!(
            scrape.value("certgate_requests_total", &[("route", "x")]),
            None
        );
        assert_eq!(scrape.value("envoy_server_live", &[]), Some(1.0));
        assert_eq!(
            scrape.value(
                "certgate_peer_cert_days_to_expiry_bucket",
                &[("le", "+Inf")]
            ),
            Some(4.0)
        );
        assert_eq!(scrape.value("odd", &[("v", "a\"b\\c,d")]), Some(7.0));
    }

    #[test]
    fn a_broken_line_is_named() {
        let err = Prometheus::parse("ok 1\nbroken{a=\"x\" 2\n").unwrap_err();
        assert!(format!("{err:#}").contains("prometheus line 2"), "{err:#}");
    }

    #[test]
    fn stats_lines() {
        let stats = Stats::parse("wasmcustom.certgate_x: 4\nhist: P0(nan,1)\n");
        assert_eq!(stats.counter("wasmcustom.certgate_x"), Some(4));
        assert_eq!(stats.get("hist"), Some("P0(nan,1)"));
        assert_eq!(stats.counter("hist"), None);
    }
}
