//! The demo end to end in a temporary directory, checked against figures recomputed
//! independently: the Delta log is replayed by hand and the Parquet files read with the
//! parquet crate (no kernel, no server, no client).

#![allow(unreachable_pub, clippy::expect_used, clippy::unwrap_used)]

mod independent;

use std::collections::BTreeMap;
use std::sync::OnceLock;

use d2o_catalog::{Admin, SqlCatalog};
use d2o_demo::dataset::{self, Dataset};
use d2o_demo::{DemoOptions, DemoReport, Figures};

/// The demo runs once; every test looks at its outputs.
struct Run {
    _dir: tempfile::TempDir,
    report: DemoReport,
}

fn run() -> &'static Run {
    static RUN: OnceLock<Run> = OnceLock::new();
    RUN.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        let started = std::time::Instant::now();
        let report = runtime.block_on(d2o_demo::run(DemoOptions::new(dir.path().join("demo")))).expect("the demo runs");
        eprintln!("demo took {:?}: {:?}", started.elapsed(), report.timings);
        Run { _dir: dir, report }
    })
}

#[test]
fn every_version_has_the_stated_rows() {
    let f = &run().report.figures;
    let rows = |v: &[d2o_demo::analysis::VersionRows]| v.iter().map(|r| (r.version, r.rows)).collect::<Vec<_>>();
    assert_eq!(rows(&f.customers_versions), vec![(0, dataset::CUSTOMERS), (1, dataset::CUSTOMERS)]);
    assert_eq!(
        rows(&f.sales_versions),
        vec![(0, dataset::INITIAL_SALES), (1, dataset::INITIAL_SALES + dataset::LATER_SALES)]
    );
    // The same, read straight from the files.
    let tables = &run().report.tables;
    for (version, rows) in [(0, 1_000), (1, 1_000)] {
        assert_eq!(independent::customers_at(&tables.customers, version).len(), rows, "customers v{version}");
    }
    for (version, rows) in [(0, 5_000), (1, 6_000)] {
        assert_eq!(independent::sales_at(&tables.sales, version).len(), rows, "sales v{version}");
    }
}

#[test]
fn the_tables_hold_the_generated_rows() {
    let data = Dataset::generate();
    let tables = &run().report.tables;
    assert_eq!(independent::customers_at(&tables.customers, 0), data.customers_v0);
    assert_eq!(independent::customers_at(&tables.customers, 1), data.customers_v1);
    assert_eq!(independent::sales_at(&tables.sales, 0), data.sales_initial);
    assert_eq!(independent::sales_at(&tables.sales, 1), data.sales_v1());
}

#[test]
fn the_tables_are_partitioned_with_change_data_feed() {
    let tables = &run().report.tables;
    let metadata = independent::metadata(&tables.sales);
    assert_eq!(metadata["partitionColumns"], serde_json::json!(["region"]));
    assert_eq!(metadata["configuration"]["delta.enableChangeDataFeed"], "true");
    let metadata = independent::metadata(&tables.customers);
    assert_eq!(metadata["configuration"]["delta.enableChangeDataFeed"], "true");
    let changes = independent::change_data(&tables.customers, 1);
    assert_eq!(changes.len(), 2 * dataset::SEGMENT_MOVES);
}

#[test]
fn the_share_and_recipient_exist() {
    let report = &run().report;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let catalog = SqlCatalog::connect(&report.catalog.to_string_lossy()).await.expect("catalog");
        let share = catalog.show_share("external_retail").await.expect("share");
        let mut tables: Vec<(String, String)> =
            share.tables.iter().map(|t| (t.schema.clone(), t.name.clone())).collect();
        tables.sort();
        assert_eq!(tables, vec![("retail".into(), "customers".into()), ("retail".into(), "sales".into())]);
        assert!(share.tables.iter().all(|t| t.history_shared));
        assert_eq!(share.recipients, vec!["partner_co".to_owned()]);
        let recipient = catalog.show_recipient("partner_co").await.expect("recipient");
        assert_eq!(recipient.shares, vec!["external_retail".to_owned()]);
        // The recipient got its credential by redeeming its activation link, once.
        let link = recipient.activation.expect("an activation link");
        assert_eq!(link.state, d2o_catalog::ActivationState::Used);
        assert_eq!(recipient.tokens.len(), 1);
    });
    let profile = std::fs::read_to_string(&report.creds).expect("config.share");
    let profile: serde_json::Value = serde_json::from_str(&profile).expect("profile JSON");
    assert_eq!(profile["shareCredentialsVersion"], 1);
    assert!(profile["bearerToken"].as_str().is_some_and(|t| !t.is_empty()));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&report.creds).expect("creds").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let dir = report.creds.parent().expect("creds dir");
        assert_eq!(std::fs::metadata(dir).expect("creds dir").permissions().mode() & 0o777, 0o700);
    }
    let gitignore = std::fs::read_to_string(report.dir.join(".gitignore")).expect(".gitignore");
    assert!(gitignore.lines().any(|l| l == ".creds/"));
}

#[test]
fn the_report_and_charts_are_written() {
    let report = &run().report;
    assert_eq!(report.charts.len(), 6);
    for chart in &report.charts {
        let file = std::fs::File::open(&chart.png).expect("png");
        let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
        decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
        let mut reader = decoder.read_info().expect("png header");
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).expect("png decodes");
        assert_eq!((info.width, info.height), d2o_demo::charts::SIZE, "{}", chart.name);
        let pixels = &buf[..info.buffer_size()];
        let channels = info.color_type.samples();
        let non_white = pixels.chunks(channels).filter(|p| p.iter().take(3).any(|c| *c < 200)).count();
        let total = (info.width * info.height) as usize;
        assert!(non_white * 100 > total, "{} is (nearly) blank: {non_white} of {total} pixels drawn", chart.name);
        let colors: std::collections::HashSet<&[u8]> = pixels.chunks(channels).collect();
        assert!(colors.len() > 3, "{} has {} colours", chart.name, colors.len());
        let svg = std::fs::read_to_string(&chart.svg).expect("svg");
        assert!(svg.starts_with("<svg") && svg.contains("<text"), "{} svg", chart.name);
    }
    let html = std::fs::read_to_string(&report.report).expect("report.html");
    assert_eq!(html.matches("data:image/png;base64,").count(), 6);
    assert!(!html.contains("src=\"http") && !html.contains("<script"), "the report is self-contained");
    assert!(html.contains("Top 10 customers") && html.contains("Revenue by segment"));
    // figures.json is exactly the figures (compared as text: parsing floats back may round).
    let written = std::fs::read_to_string(&report.figures_json).expect("figures.json");
    assert_eq!(written, serde_json::to_string_pretty(&report.figures).expect("json"));
    let parsed: Figures = serde_json::from_str(&written).expect("figures.json parses");
    assert_eq!(parsed.top_customers, report.figures.top_customers);
}

/// `$1,234.56` from cents, as a reader expects it (written here, not taken from the crate).
fn money(cents: i64) -> String {
    let whole = (cents / 100).to_string();
    let mut grouped = String::new();
    for (i, ch) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(ch);
    }
    format!("${grouped}.{:02}", cents % 100)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

#[test]
fn the_figures_equal_an_independent_computation() {
    let report = &run().report;
    let f = &report.figures;
    let customers = independent::customers_at(&report.tables.customers, 1);
    let sales = independent::sales_at(&report.tables.sales, 1);
    let cents = |a: f64| (a * 100.0).round() as i64;
    let segment_of: BTreeMap<i64, &str> = customers.iter().map(|c| (c.id, c.segment.as_str())).collect();

    // Total and by segment.
    let total: i64 = sales.iter().map(|s| cents(s.amount)).sum();
    assert_eq!(cents(f.total_revenue), total);
    let mut by_segment: BTreeMap<&str, (usize, i64)> = BTreeMap::new();
    for s in &sales {
        let e = by_segment.entry(segment_of[&s.customer_id]).or_default();
        e.0 += 1;
        e.1 += cents(s.amount);
    }
    assert_eq!(f.revenue_by_segment.len(), by_segment.len());
    for r in &f.revenue_by_segment {
        let (n, c) = by_segment[r.segment.as_str()];
        assert_eq!((r.transactions, cents(r.revenue)), (n, c), "{}", r.segment);
    }
    assert!(f.revenue_by_segment.windows(2).all(|w| w[0].revenue >= w[1].revenue));

    // Top customers.
    let mut per_customer: BTreeMap<i64, i64> = BTreeMap::new();
    for s in &sales {
        *per_customer.entry(s.customer_id).or_default() += cents(s.amount);
    }
    let mut ranked: Vec<(i64, i64)> = per_customer.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let top: Vec<(i64, i64)> = f.top_customers.iter().map(|c| (c.id, cents(c.revenue))).collect();
    assert_eq!(top, ranked[..10].to_vec());

    // Summary statistics of amounts.
    let mut amounts: Vec<f64> = sales.iter().map(|s| s.amount).collect();
    amounts.sort_by(f64::total_cmp);
    let n = amounts.len() as f64;
    let mean = amounts.iter().sum::<f64>() / n;
    let std = (amounts.iter().map(|a| (a - mean) * (a - mean)).sum::<f64>() / (n - 1.0)).sqrt();
    assert_eq!(f.sales_amounts.count, amounts.len());
    assert!(close(f.sales_amounts.mean, mean), "{} vs {mean}", f.sales_amounts.mean);
    assert!(close(f.sales_amounts.std_dev, std));
    assert_eq!(f.sales_amounts.min, amounts[0]);
    assert_eq!(f.sales_amounts.max, amounts[amounts.len() - 1]);
    // Median of an even count: the mean of the middle two.
    let mid = amounts.len() / 2;
    assert!(close(f.sales_amounts.median, (amounts[mid - 1] + amounts[mid]) / 2.0));

    // Monthly revenue and customers by segment.
    let mut months: BTreeMap<String, i64> = BTreeMap::new();
    for s in &sales {
        let d = chrono::DateTime::from_timestamp(i64::from(s.date) * 86_400, 0).expect("date");
        *months.entry(d.format("%Y-%m").to_string()).or_default() += cents(s.amount);
    }
    let got: BTreeMap<String, i64> = f.monthly_revenue.iter().map(|m| (m.month.clone(), cents(m.revenue))).collect();
    assert_eq!(got, months);
    assert_eq!(got.len(), 12);
    let mut segments: BTreeMap<String, usize> = BTreeMap::new();
    for c in &customers {
        *segments.entry(c.segment.clone()).or_default() += 1;
    }
    assert_eq!(f.customers_by_segment, segments);

    // Merged view totals.
    let merged_cents: i64 = f.region_segment.iter().map(|r| cents(r.revenue)).sum();
    let merged_customers: usize = f.region_segment.iter().map(|r| r.customers).sum();
    assert_eq!((merged_cents, merged_customers), (total, customers.len()));

    // The report shows those independently computed figures.
    let html = std::fs::read_to_string(&report.report).expect("report.html");
    let shown = |what: &str, c: i64| {
        assert!(
            html.contains(&format!("<td>{}</td>", money(c)))
                || html.contains(&format!("<strong>{}</strong>", money(c))),
            "{what} {} not in the report",
            money(c)
        )
    };
    shown("total revenue", total);
    for (segment, (_, c)) in &by_segment {
        shown(segment, *c);
    }
    for (id, c) in &ranked[..10] {
        shown(&format!("customer {id}"), *c);
    }
    for (month, c) in &months {
        shown(month, *c);
    }

    // Histogram covers every sale.
    assert_eq!(f.amount_histogram.iter().map(|b| b.count).sum::<usize>(), sales.len());

    // The change feed: 50 moves, each a preimage and a postimage; 1,000 inserted sales.
    let data = Dataset::generate();
    let c = &f.changes;
    assert_eq!(c.customers_change_types.get("update_preimage"), Some(&dataset::SEGMENT_MOVES));
    assert_eq!(c.customers_change_types.get("update_postimage"), Some(&dataset::SEGMENT_MOVES));
    assert_eq!(c.segment_moves.iter().map(|m| m.id).collect::<Vec<_>>(), data.moved);
    for m in &c.segment_moves {
        let i = (m.id - 1) as usize;
        assert_eq!(
            (m.from.as_str(), m.to.as_str()),
            (data.customers_v0[i].segment.as_str(), data.customers_v1[i].segment.as_str())
        );
    }
    assert_eq!(c.sales_change_types, BTreeMap::from([("insert".to_owned(), dataset::LATER_SALES)]));
    assert_eq!(cents(c.sales_inserted_revenue), data.sales_later.iter().map(|s| cents(s.amount)).sum::<i64>());
}
