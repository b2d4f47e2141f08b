//! The operations endpoint from a test: a plain HTTP/1.1 GET against `[admin] listen`, and the
//! Prometheus text format parsed into samples (name, labels, value), so tests compare
//! numbers rather than grep lines.

use std::collections::BTreeMap;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A free loopback port for `[admin] listen` (bound and released; the proxy binds it next).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// `GET path` on 127.0.0.1:`port` (waiting up to 10 s for the endpoint to listen): the status
/// code and the body.
pub async fn http_get(port: u16, path: &str) -> (u16, String) {
    // The proxy binds the endpoint as it starts: a just-started one may not listen yet.
    let mut tries = 0;
    let mut s = loop {
        match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            Ok(s) => break s,
            Err(_) if tries < 100 => {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(e) => panic!("connect to the admin endpoint on port {port}: {e}"),
        }
    };
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: orgwall\r\n\r\n").as_bytes())
        .await
        .expect("send request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.expect("read response");
    let text = String::from_utf8(raw).expect("UTF-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("HTTP head");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head}"));
    (status, body.to_string())
}

/// One sample: metric name and its labels.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Series {
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

/// Parses the Prometheus text exposition format (comments skipped, label values unescaped);
/// panics on a line that is not a sample.
pub fn parse_metrics(text: &str) -> BTreeMap<Series, f64> {
    let mut out = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("not a sample: {line}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value: {line}")),
        };
        let (name, labels) = match series.split_once('{') {
            None => (series.to_string(), BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest
                    .strip_suffix('}')
                    .unwrap_or_else(|| panic!("unclosed labels: {line}"));
                (name.to_string(), parse_labels(body, line))
            }
        };
        out.insert(Series { name, labels }, value);
    }
    out
}

fn parse_labels(mut body: &str, line: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    while !body.is_empty() {
        let (key, rest) = body
            .split_once("=\"")
            .unwrap_or_else(|| panic!("bad label: {line}"));
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => panic!("bad escape: {line}"),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => panic!("unterminated label value: {line}"),
            }
        };
        labels.insert(key.to_string(), value);
        body = rest[end + 1..].trim_start_matches(',');
    }
    labels
}

/// The value of `name` with exactly `labels`, 0 when the series is absent.
pub fn sample(m: &BTreeMap<Series, f64>, name: &str, labels: &[(&str, &str)]) -> f64 {
    let key = Series {
        name: name.to_string(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    m.get(&key).copied().unwrap_or(0.0)
}

/// Scrapes `/metrics` and parses it.
pub async fn scrape(port: u16) -> BTreeMap<Series, f64> {
    let (status, body) = http_get(port, "/metrics").await;
    assert_eq!(status, 200, "{body}");
    parse_metrics(&body)
}
