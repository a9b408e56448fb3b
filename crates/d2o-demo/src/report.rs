//! `report.html`: one self-contained page (charts embedded as base64 PNG, no external files),
//! with the figures as tables.

use std::fmt::Write as _;

use base64::Engine as _;

use crate::DemoError;
use crate::analysis::Figures;
use crate::charts::Chart;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn money(v: f64) -> String {
    // Thousands separators, two decimals.
    let cents = (v * 100.0).round() as i64;
    let (sign, cents) = if cents < 0 { ("-", -cents) } else { ("", cents) };
    let whole = (cents / 100).to_string();
    let mut grouped = String::new();
    for (i, ch) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(ch);
    }
    format!("{sign}${grouped}.{:02}", cents % 100)
}

fn table(out: &mut String, headers: &[&str], rows: Vec<Vec<String>>) {
    out.push_str("<table><thead><tr>");
    for h in headers {
        let _ = write!(out, "<th>{}</th>", esc(h));
    }
    out.push_str("</tr></thead><tbody>");
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            let _ = write!(out, "<td>{}</td>", esc(&cell));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>\n");
}

/// Context for the page header.
#[derive(Debug, Clone)]
pub struct ReportContext<'a> {
    pub endpoint: &'a str,
    pub share: &'a str,
    pub recipient: &'a str,
    pub tables: &'a [String],
}

/// Renders the report.
pub fn render(ctx: &ReportContext<'_>, f: &Figures, charts: &[Chart]) -> Result<String, DemoError> {
    let mut h = String::new();
    h.push_str(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>d2o demo: retail analysis</title>\n<style>\n\
         body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}\n\
         table{border-collapse:collapse;margin:0.5em 0 1.5em}th,td{border:1px solid #ccc;padding:4px 10px;text-align:right}\n\
         th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{max-width:100%;border:1px solid #eee}\n\
         code{background:#f3f3f3;padding:1px 4px}\n</style></head><body>\n",
    );
    let _ = writeln!(h, "<h1>Retail analysis over Delta Sharing</h1>");
    let _ = writeln!(
        h,
        "<p>Read by the recipient <code>{}</code> from the share <code>{}</code> at <code>{}</code> with d2o's Rust client; tables: {}.</p>",
        esc(ctx.recipient),
        esc(ctx.share),
        esc(ctx.endpoint),
        ctx.tables.iter().map(|t| format!("<code>{}</code>", esc(t))).collect::<Vec<_>>().join(", ")
    );

    h.push_str("<h2>Table versions (time travel)</h2>\n");
    let mut rows = Vec::new();
    for v in &f.customers_versions {
        rows.push(vec!["customers".to_owned(), v.version.to_string(), v.rows.to_string()]);
    }
    for v in &f.sales_versions {
        rows.push(vec!["sales".to_owned(), v.version.to_string(), v.rows.to_string()]);
    }
    table(&mut h, &["table", "version", "rows"], rows);

    h.push_str("<h2>Summary statistics (latest versions)</h2>\n");
    let stat_row = |name: &str, s: &crate::analysis::Summary, m: bool| {
        let fmt = |v: f64| if m { money(v) } else { format!("{v:.2}") };
        vec![
            name.to_owned(),
            s.count.to_string(),
            fmt(s.mean),
            fmt(s.std_dev),
            fmt(s.min),
            fmt(s.q1),
            fmt(s.median),
            fmt(s.q3),
            fmt(s.max),
        ]
    };
    table(
        &mut h,
        &["column", "count", "mean", "std", "min", "25%", "median", "75%", "max"],
        vec![
            stat_row("sales.amount", &f.sales_amounts, true),
            stat_row("sales.quantity", &f.sales_quantities, false),
            stat_row("customers.age", &f.customer_ages, false),
        ],
    );
    let _ = writeln!(h, "<p>Total revenue: <strong>{}</strong>.</p>", money(f.total_revenue));

    h.push_str("<h2>Revenue by segment</h2>\n");
    table(
        &mut h,
        &["segment", "customers", "transactions", "revenue", "share"],
        f.revenue_by_segment
            .iter()
            .map(|r| {
                vec![
                    r.segment.clone(),
                    r.customers.to_string(),
                    r.transactions.to_string(),
                    money(r.revenue),
                    format!("{:.1}%", r.share_pct),
                ]
            })
            .collect(),
    );

    h.push_str("<h2>Top 10 customers</h2>\n");
    table(
        &mut h,
        &["customer", "id", "segment", "region", "transactions", "revenue"],
        f.top_customers
            .iter()
            .map(|c| {
                vec![
                    c.name.clone(),
                    c.id.to_string(),
                    c.segment.clone(),
                    c.region.clone(),
                    c.transactions.to_string(),
                    money(c.revenue),
                ]
            })
            .collect(),
    );

    h.push_str("<h2>Customers and sales merged: region × segment</h2>\n");
    table(
        &mut h,
        &["region", "segment", "customers", "avg age", "transactions", "revenue", "avg order"],
        f.region_segment
            .iter()
            .map(|r| {
                vec![
                    r.region.clone(),
                    r.segment.clone(),
                    r.customers.to_string(),
                    format!("{:.1}", r.avg_customer_age),
                    r.transactions.to_string(),
                    money(r.revenue),
                    money(r.avg_order_value),
                ]
            })
            .collect(),
    );

    h.push_str("<h2>Product categories</h2>\n");
    table(
        &mut h,
        &["category", "transactions", "revenue", "median amount", "max amount"],
        f.category_amounts
            .iter()
            .map(|c| {
                vec![
                    c.category.clone(),
                    c.amounts.count.to_string(),
                    money(c.revenue),
                    money(c.amounts.median),
                    money(c.amounts.max),
                ]
            })
            .collect(),
    );

    h.push_str("<h2>Monthly revenue</h2>\n");
    table(
        &mut h,
        &["month", "transactions", "revenue"],
        f.monthly_revenue.iter().map(|m| vec![m.month.clone(), m.transactions.to_string(), money(m.revenue)]).collect(),
    );

    h.push_str("<h2>Customer demographics</h2>\n");
    table(
        &mut h,
        &["age band", "customers"],
        f.customers_by_age_band.iter().map(|(b, n)| vec![b.clone(), n.to_string()]).collect(),
    );

    let c = &f.changes;
    let _ = writeln!(
        h,
        "<h2>Change data feed</h2>\n<p><code>customers</code> versions {} to {}:</p>",
        c.customers_from_version, c.customers_to_version
    );
    table(
        &mut h,
        &["change type", "rows"],
        c.customers_change_types.iter().map(|(t, n)| vec![t.clone(), n.to_string()]).collect(),
    );
    table(
        &mut h,
        &["customer", "id", "from segment", "to segment"],
        c.segment_moves.iter().map(|m| vec![m.name.clone(), m.id.to_string(), m.from.clone(), m.to.clone()]).collect(),
    );
    let _ = writeln!(
        h,
        "<p><code>sales</code> versions {} to {}: {}; revenue of the inserted rows {}.</p>",
        c.sales_from_version,
        c.sales_to_version,
        esc(&c.sales_change_types.iter().map(|(t, n)| format!("{n} {t}")).collect::<Vec<_>>().join(", ")),
        money(c.sales_inserted_revenue)
    );

    h.push_str("<h2>Charts</h2>\n");
    for chart in charts {
        let bytes = std::fs::read(&chart.png).map_err(|e| DemoError::io(&chart.png, e))?;
        let _ = writeln!(
            h,
            "<h3>{}</h3>\n<img alt=\"{}\" src=\"data:image/png;base64,{}\">",
            esc(chart.title),
            esc(chart.title),
            base64::engine::general_purpose::STANDARD.encode(bytes)
        );
    }
    h.push_str("</body></html>\n");
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_grouped() {
        assert_eq!(money(1234567.891), "$1,234,567.89");
        assert_eq!(money(12.5), "$12.50");
        assert_eq!(money(999.0), "$999.00");
        assert_eq!(esc("<a&b>"), "&lt;a&amp;b&gt;");
    }
}
