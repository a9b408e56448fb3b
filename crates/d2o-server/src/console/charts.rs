//! Usage charts: stacked bars per time bucket, one colour per recipient or table, drawn as
//! inline SVG on the server (no script, nothing fetched). Each bar segment has a tooltip, and
//! a table under the chart gives the totals.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use d2o_catalog::UsagePoint;
use maud::{Markup, PreEscaped, html};

use super::layout::bytes;

/// What a chart sums.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Metric {
    Requests,
    Files,
    Bytes,
}

impl Metric {
    pub(super) const ALL: [Metric; 3] = [Metric::Requests, Metric::Files, Metric::Bytes];

    pub(super) fn name(self) -> &'static str {
        match self {
            Metric::Requests => "requests",
            Metric::Files => "files",
            Metric::Bytes => "bytes",
        }
    }

    pub(super) fn parse(text: Option<&str>) -> Metric {
        Metric::ALL.into_iter().find(|m| Some(m.name()) == text).unwrap_or(Metric::Requests)
    }

    fn of(self, p: &UsagePoint) -> i64 {
        match self {
            Metric::Requests => p.requests,
            Metric::Files => p.files,
            Metric::Bytes => p.bytes,
        }
    }

    fn format(self, n: i64) -> String {
        match self {
            Metric::Bytes => bytes(n),
            _ => n.to_string(),
        }
    }
}

/// The time window of a chart: `buckets` buckets of `bucket_ms`, ending at `until_ms`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Window {
    pub(super) since_ms: i64,
    pub(super) until_ms: i64,
    pub(super) bucket_ms: i64,
}

impl Window {
    pub(super) const RANGES: [(&'static str, &'static str); 3] =
        [("24h", "last 24 hours"), ("7d", "last 7 days"), ("30d", "last 30 days")];

    /// The window of a range name (`24h`, `7d`, `30d`) ending with the bucket that holds
    /// `now_ms`; buckets are whole UTC hours or days.
    pub(super) fn of(range: Option<&str>, now_ms: i64) -> Window {
        const HOUR: i64 = 3_600_000;
        let (bucket_ms, buckets) = match range {
            Some("7d") => (6 * HOUR, 28),
            Some("30d") => (24 * HOUR, 30),
            _ => (HOUR, 24),
        };
        let until_ms = (now_ms.div_euclid(bucket_ms) + 1) * bucket_ms;
        Window { since_ms: until_ms - buckets * bucket_ms, until_ms, bucket_ms }
    }

    fn buckets(self) -> usize {
        ((self.until_ms - self.since_ms) / self.bucket_ms).max(1) as usize
    }

    fn label(self, bucket: usize) -> String {
        let ms = self.since_ms + bucket as i64 * self.bucket_ms;
        let format = if self.bucket_ms >= 24 * 3_600_000 { "%b %d" } else { "%b %d %H:%M" };
        chrono::DateTime::from_timestamp_millis(ms).map_or_else(String::new, |t| t.format(format).to_string())
    }
}

/// Series colours (distinguishable, also in print); the last is "other".
const COLOURS: [&str; 8] = ["#0b63ce", "#e8710a", "#1e8e3e", "#9334e6", "#d01884", "#12a4af", "#b06000", "#7f8c99"];
const WIDTH: f64 = 800.0;
const HEIGHT: f64 = 240.0;
const LEFT: f64 = 64.0;
const BOTTOM: f64 = 28.0;
const TOP: f64 = 10.0;

/// The chart of `points` in `window`, summing `metric`, with `what` naming the series (for
/// screen readers and the empty state).
pub(super) fn stacked_bars(points: &[UsagePoint], window: Window, metric: Metric, what: &str) -> Markup {
    // Series by total, largest first; beyond the palette they are summed as "other".
    let mut totals: BTreeMap<&str, (i64, i64, i64)> = BTreeMap::new();
    for p in points {
        let t = totals.entry(&p.key).or_default();
        t.0 += p.requests;
        t.1 += p.files;
        t.2 += p.bytes;
    }
    let mut keys: Vec<(&str, (i64, i64, i64))> = totals.into_iter().collect();
    let value_of = |t: &(i64, i64, i64)| match metric {
        Metric::Requests => t.0,
        Metric::Files => t.1,
        Metric::Bytes => t.2,
    };
    keys.sort_by(|a, b| value_of(&b.1).cmp(&value_of(&a.1)).then(a.0.cmp(b.0)));
    if keys.is_empty() {
        return html! { p.empty { "No " (what) " usage in this period." } };
    }
    let named = if keys.len() > COLOURS.len() { COLOURS.len() - 1 } else { keys.len() };
    let series_of = |key: &str| keys[..named].iter().position(|(k, _)| *k == key).unwrap_or(named);
    let series_name = |i: usize| if i < named { keys[i].0 } else { "other" };
    let series = named + usize::from(keys.len() > named);

    let buckets = window.buckets();
    let mut stacks = vec![vec![0i64; series]; buckets];
    for p in points {
        let b = ((p.bucket_ms - window.since_ms) / window.bucket_ms) as usize;
        if let Some(stack) = stacks.get_mut(b) {
            stack[series_of(&p.key)] += metric.of(p);
        }
    }
    let max = stacks.iter().map(|s| s.iter().sum::<i64>()).max().unwrap_or(0).max(1);
    let top = nice_ceiling(max);
    let plot_h = HEIGHT - TOP - BOTTOM;
    let slot = (WIDTH - LEFT - 8.0) / buckets as f64;
    let bar = (slot * 0.72).max(1.0);
    let y = |v: i64| TOP + plot_h - (v as f64 / top as f64) * plot_h;

    let mut svg = String::with_capacity(8 * 1024);
    let _ = write!(
        svg,
        "<svg viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" aria-label=\"{} per {} over time\" xmlns=\"http://www.w3.org/2000/svg\">",
        metric.name(),
        escape(what)
    );
    for i in 0..=4 {
        let v = top * i / 4;
        let gy = y(v);
        let _ = write!(
            svg,
            "<line class=\"grid\" x1=\"{LEFT}\" x2=\"{WIDTH}\" y1=\"{gy:.1}\" y2=\"{gy:.1}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            LEFT - 6.0,
            gy + 4.0,
            escape(&metric.format(v))
        );
    }
    let _ =
        write!(svg, "<line class=\"axis\" x1=\"{LEFT}\" x2=\"{WIDTH}\" y1=\"{0:.1}\" y2=\"{0:.1}\"/>", TOP + plot_h);
    let label_every = buckets.div_ceil(6).max(1);
    for (b, stack) in stacks.iter().enumerate() {
        let x = LEFT + 4.0 + b as f64 * slot + (slot - bar) / 2.0;
        let mut base = 0i64;
        for (s, value) in stack.iter().enumerate().filter(|(_, v)| **v > 0) {
            let (y0, y1) = (y(base), y(base + value));
            base += value;
            let _ = write!(
                svg,
                "<rect x=\"{x:.1}\" y=\"{y1:.1}\" width=\"{bar:.1}\" height=\"{:.1}\" fill=\"{}\"><title>{} · {} · {} {}</title></rect>",
                (y0 - y1).max(0.5),
                COLOURS[s.min(COLOURS.len() - 1)],
                escape(series_name(s)),
                escape(&window.label(b)),
                escape(&metric.format(*value)),
                metric.name()
            );
        }
        if b % label_every == 0 {
            let _ = write!(
                svg,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                x + bar / 2.0,
                HEIGHT - 8.0,
                escape(&window.label(b))
            );
        }
    }
    svg.push_str("</svg>");

    html! {
        div.chart { (PreEscaped(svg)) }
        ul.legend {
            @for s in 0..series {
                li {
                    svg width="10" height="10" aria-hidden="true" { rect width="10" height="10" rx="2" fill=(COLOURS[s.min(COLOURS.len() - 1)]) {} }
                    (series_name(s))
                }
            }
        }
        details {
            summary.muted { "Totals" }
            div.scroll { table {
                thead { tr { th { (what) } th.num { "Requests" } th.num { "Files" } th.num { "Bytes" } } }
                tbody {
                    @for (key, (requests, files, b)) in &keys {
                        tr { td { (key) } td.num { (requests) } td.num { (files) } td.num { (bytes(*b)) } }
                    }
                }
            } }
        }
    }
}

/// `text` escaped for SVG text and attributes (maud's escaping, as every page's).
fn escape(text: &str) -> String {
    html! { (text) }.into_string()
}

/// The smallest 1, 2 or 5 times a power of ten, times 4 (for four grid steps), at least `max`.
fn nice_ceiling(max: i64) -> i64 {
    let mut step = 1i64;
    loop {
        for m in [1, 2, 5] {
            let candidate = step.saturating_mul(m).saturating_mul(4);
            if candidate >= max {
                return candidate;
            }
        }
        if step > i64::MAX / 10 {
            return max;
        }
        step *= 10;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(bucket_ms: i64, key: &str, requests: i64) -> UsagePoint {
        UsagePoint { bucket_ms, key: key.into(), requests, files: requests * 2, bytes: requests * 1000 }
    }

    #[test]
    fn windows_end_with_the_current_bucket() {
        let now = 1_700_000_123_456;
        let w = Window::of(Some("24h"), now);
        assert_eq!(w.buckets(), 24);
        assert!(w.since_ms < now && now < w.until_ms);
        assert_eq!(w.until_ms % 3_600_000, 0);
        assert_eq!(Window::of(Some("30d"), now).buckets(), 30);
        assert_eq!(Window::of(Some("bogus"), now).bucket_ms, 3_600_000);
    }

    #[test]
    fn bars_stack_per_bucket_and_names_are_escaped() {
        let w = Window { since_ms: 0, until_ms: 4 * 3_600_000, bucket_ms: 3_600_000 };
        let points = [point(0, "<script>alert(1)</script>", 3), point(0, "b", 1), point(3_600_000 * 3, "b", 4)];
        let html = stacked_bars(&points, w, Metric::Requests, "recipient").into_string();
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert_eq!(html.matches("<rect x=").count(), 3, "{html}");
        // The tallest stack (b: 4) sets the scale: 4 is a nice ceiling already.
        assert!(html.contains("<title>b · "), "{html}");
    }

    #[test]
    fn many_series_fold_into_other() {
        let w = Window { since_ms: 0, until_ms: 3_600_000, bucket_ms: 3_600_000 };
        let points: Vec<UsagePoint> = (0..12).map(|i| point(0, &format!("r{i:02}"), 20 - i)).collect();
        let html = stacked_bars(&points, w, Metric::Files, "recipient").into_string();
        assert!(html.contains(">other<") || html.contains("other</li>"), "{html}");
        assert_eq!(html.matches("<li>").count(), 8);
    }

    #[test]
    fn an_empty_chart_says_so() {
        let w = Window::of(None, 0);
        assert!(stacked_bars(&[], w, Metric::Bytes, "table").into_string().contains("No table usage"));
    }

    #[test]
    fn ceilings_are_round() {
        assert_eq!(nice_ceiling(1), 4);
        assert_eq!(nice_ceiling(5), 8);
        assert_eq!(nice_ceiling(37), 40);
        assert_eq!(nice_ceiling(41), 80);
        assert_eq!(nice_ceiling(1_000_001), 2_000_000);
    }
}
