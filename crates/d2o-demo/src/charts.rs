//! The report's six charts, drawn with plotters from [`Figures`], each as PNG and SVG.
//!
//! plotters runs without system fonts here (`ab_glyph`): [`register_font`] registers the
//! bundled DejaVu Sans as `sans-serif` before anything is drawn.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::coord::ranged1d::SegmentedCoord;
use plotters::coord::types::{RangedCoordf64, RangedCoordi32};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::DemoError;
use crate::analysis::Figures;

static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

/// Pixel size of every chart.
pub const SIZE: (u32, u32) = (900, 520);

const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

type DrawResult = Result<(), Box<dyn std::error::Error>>;

/// Registers the bundled font once per process; every caption and label needs it.
pub fn register_font() -> Result<(), DemoError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| plotters::style::register_font("sans-serif", FontStyle::Normal, FONT).is_ok());
    if ok { Ok(()) } else { Err(DemoError::Chart("the bundled font DejaVuSans.ttf could not be loaded".to_owned())) }
}

/// One chart as written: its name, title, and files.
#[derive(Debug, Clone)]
pub struct Chart {
    /// File stem, e.g. `revenue_by_segment`.
    pub name: &'static str,
    pub title: &'static str,
    pub png: PathBuf,
    pub svg: PathBuf,
}

/// The charts: file stem and title.
pub const CHARTS: [(&str, &str); 6] = [
    ("amount_histogram", "Distribution of sale amounts"),
    ("amount_by_category_boxplot", "Sale amounts by product category"),
    ("monthly_revenue", "Revenue per month"),
    ("top_customers", "Top 10 customers by revenue"),
    ("customer_segments_pie", "Customers by segment"),
    ("revenue_by_segment", "Revenue by customer segment"),
];

fn draw<DB: DrawingBackend>(name: &str, root: &DrawingArea<DB, Shift>, f: &Figures) -> DrawResult
where
    DB::ErrorType: 'static,
{
    match name {
        "amount_histogram" => amount_histogram(root, f),
        "amount_by_category_boxplot" => category_boxes(root, f),
        "monthly_revenue" => monthly_revenue(root, f),
        "top_customers" => top_customers(root, f),
        "customer_segments_pie" => segments_pie(root, f),
        "revenue_by_segment" => revenue_by_segment(root, f),
        other => Err(format!("no chart named {other}").into()),
    }
}

/// Draws the six charts into `dir` (`<name>.png` and `<name>.svg`).
pub fn write_charts(dir: &Path, figures: &Figures) -> Result<Vec<Chart>, DemoError> {
    register_font()?;
    std::fs::create_dir_all(dir).map_err(|e| DemoError::io(dir, e))?;
    let mut out = Vec::new();
    for (name, title) in CHARTS {
        let png = dir.join(format!("{name}.png"));
        let svg = dir.join(format!("{name}.svg"));
        let chart_err = |e: Box<dyn std::error::Error>| DemoError::Chart(format!("{name}: {e}"));
        {
            let root = BitMapBackend::new(&png, SIZE).into_drawing_area();
            root.fill(&WHITE).map_err(|e| DemoError::Chart(format!("{name}: {e}")))?;
            draw(name, &root, figures).map_err(chart_err)?;
            root.present().map_err(|e| DemoError::Chart(format!("{name}: {e}")))?;
        }
        {
            let root = SVGBackend::new(&svg, SIZE).into_drawing_area();
            root.fill(&WHITE).map_err(|e| DemoError::Chart(format!("{name}: {e}")))?;
            draw(name, &root, figures).map_err(chart_err)?;
            root.present().map_err(|e| DemoError::Chart(format!("{name}: {e}")))?;
        }
        out.push(Chart { name, title, png, svg });
    }
    Ok(out)
}

/// `n` category slots. plotters' integer ranges include their end, so `0..n - 1` gives `n`.
fn segments(n: usize) -> SegmentedCoord<RangedCoordi32> {
    (0..(n.max(1) as i32 - 1)).into_segmented()
}

fn money_label(v: f64) -> String {
    if v.abs() >= 1_000_000.0 {
        format!("${:.1}M", v / 1_000_000.0)
    } else if v.abs() >= 1_000.0 {
        let k = v / 1_000.0;
        if (k - k.round()).abs() < 1e-9 { format!("${k:.0}k") } else { format!("${k:.1}k") }
    } else {
        format!("${v:.0}")
    }
}

/// A chart of money amounts (y, from 0 to `y_max`) per named category (x), its mesh drawn:
/// `caption` with its font size, `axes` the x and y descriptions, `x_mesh` whether vertical
/// grid lines are drawn.
fn money_per_category<'a, DB: DrawingBackend>(
    root: &'a DrawingArea<DB, Shift>,
    caption: (&str, u32),
    axes: (&str, &str),
    names: &[String],
    y_max: f64,
    y_label_area: u32,
    x_mesh: bool,
) -> Result<CategoryChart<'a, DB>, Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    let mut chart = ChartBuilder::on(root)
        .caption(caption.0, ("sans-serif", caption.1))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(y_label_area)
        .build_cartesian_2d(segments(names.len()), 0.0..y_max)?;
    let mut mesh = chart.configure_mesh();
    if !x_mesh {
        mesh.disable_x_mesh();
    }
    mesh.x_desc(axes.0)
        .y_desc(axes.1)
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => names.get(*i as usize).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .y_label_formatter(&|v| money_label(*v))
        .draw()?;
    Ok(chart)
}

type CategoryChart<'a, DB> = ChartContext<'a, DB, Cartesian2d<SegmentedCoord<RangedCoordi32>, RangedCoordf64>>;

fn amount_histogram<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, f: &Figures) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let bins = &f.amount_histogram;
    let x_max = bins.last().map_or(1.0, |b| b.upper);
    let y_max = bins.iter().map(|b| b.count).max().unwrap_or(1) as f64 * 1.1;
    let mut chart = ChartBuilder::on(root)
        .caption("Distribution of sale amounts", ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
    chart
        .configure_mesh()
        .x_desc("Sale amount (USD)")
        .y_desc("Transactions")
        .x_label_formatter(&|v| money_label(*v))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()?;
    chart.draw_series(bins.iter().map(|b| {
        let mut r = Rectangle::new([(b.lower, 0.0), (b.upper, b.count as f64)], PALETTE[0].mix(0.8).filled());
        r.set_margin(0, 0, 1, 1);
        r
    }))?;
    Ok(())
}

fn category_boxes<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, f: &Figures) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let cats = &f.category_amounts;
    let names: Vec<String> = cats.iter().map(|c| c.category.clone()).collect();
    let y_max = cats.iter().map(|c| c.amounts.max).fold(1.0, f64::max) * 1.05;
    let mut chart = money_per_category(
        root,
        ("Sale amounts by product category (box: quartiles, whiskers: min-max)", 20),
        ("Product category", "Sale amount (USD)"),
        &names,
        y_max,
        60,
        false,
    )?;
    for (i, c) in cats.iter().enumerate() {
        let i = i as i32;
        let color = PALETTE[i as usize % PALETTE.len()];
        let s = &c.amounts;
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(SegmentValue::CenterOf(i), s.min), (SegmentValue::CenterOf(i), s.q1)],
            BLACK.stroke_width(1),
        )))?;
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(SegmentValue::CenterOf(i), s.q3), (SegmentValue::CenterOf(i), s.max)],
            BLACK.stroke_width(1),
        )))?;
        let mut body = Rectangle::new(
            [(SegmentValue::Exact(i), s.q1), (SegmentValue::Exact(i + 1), s.q3)],
            color.mix(0.6).filled(),
        );
        body.set_margin(0, 0, 30, 30);
        let mut outline =
            Rectangle::new([(SegmentValue::Exact(i), s.q1), (SegmentValue::Exact(i + 1), s.q3)], BLACK.stroke_width(1));
        outline.set_margin(0, 0, 30, 30);
        let mut median = Rectangle::new(
            [(SegmentValue::Exact(i), s.median), (SegmentValue::Exact(i + 1), s.median)],
            BLACK.stroke_width(3),
        );
        median.set_margin(0, 0, 30, 30);
        chart.draw_series([body, outline, median])?;
    }
    Ok(())
}

fn monthly_revenue<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, f: &Figures) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let months = &f.monthly_revenue;
    let names: Vec<String> = months.iter().map(|m| m.month.clone()).collect();
    let y_max = months.iter().map(|m| m.revenue).fold(1.0, f64::max) * 1.15;
    let mut chart =
        money_per_category(root, ("Revenue per month", 24), ("Month", "Revenue (USD)"), &names, y_max, 70, true)?;
    let points: Vec<(SegmentValue<i32>, f64)> =
        months.iter().enumerate().map(|(i, m)| (SegmentValue::CenterOf(i as i32), m.revenue)).collect();
    chart.draw_series(LineSeries::new(points.clone(), PALETTE[0].stroke_width(3)))?;
    chart.draw_series(points.into_iter().map(|p| Circle::new(p, 4, PALETTE[0].filled())))?;
    Ok(())
}

fn top_customers<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, f: &Figures) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let top = &f.top_customers;
    let n = top.len();
    // The best customer on top: row `n - 1 - rank`.
    let labels: Vec<String> =
        (0..n).map(|row| top.get(n - 1 - row).map(|c| format!("{} (#{})", c.name, c.id)).unwrap_or_default()).collect();
    let x_max = top.iter().map(|c| c.revenue).fold(1.0, f64::max) * 1.1;
    let mut chart = ChartBuilder::on(root)
        .caption("Top 10 customers by revenue", ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(190)
        .build_cartesian_2d(0.0..x_max, segments(n))?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_desc("Revenue (USD)")
        .x_label_formatter(&|v| money_label(*v))
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => labels.get(*i as usize).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .y_labels(n)
        .draw()?;
    chart.draw_series(top.iter().enumerate().map(|(rank, c)| {
        let row = (n - 1 - rank) as i32;
        let mut r = Rectangle::new(
            [(0.0, SegmentValue::Exact(row)), (c.revenue, SegmentValue::Exact(row + 1))],
            PALETTE[2].mix(0.85).filled(),
        );
        r.set_margin(4, 4, 0, 0);
        r
    }))?;
    Ok(())
}

fn segments_pie<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, f: &Figures) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let root = root.titled("Customer demographics: customers by segment", ("sans-serif", 24))?;
    let (w, h) = root.dim_in_pixel();
    let center = (w as i32 / 2, h as i32 / 2);
    let radius = f64::from(h.min(w)) * 0.36;
    let sizes: Vec<f64> = f.customers_by_segment.values().map(|v| *v as f64).collect();
    let labels: Vec<String> = f.customers_by_segment.iter().map(|(s, n)| format!("{s} ({n})")).collect();
    let colors: Vec<RGBColor> = (0..sizes.len()).map(|i| PALETTE[i % PALETTE.len()]).collect();
    let mut pie = Pie::new(&center, &radius, &sizes, &colors, &labels);
    pie.label_style(("sans-serif", 18).into_font());
    pie.percentages(("sans-serif", 16).into_font().color(&WHITE));
    root.draw(&pie)?;
    Ok(())
}

fn revenue_by_segment<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, f: &Figures) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let rows = &f.revenue_by_segment;
    let names: Vec<String> = rows.iter().map(|r| r.segment.clone()).collect();
    let y_max = rows.iter().map(|r| r.revenue).fold(1.0, f64::max) * 1.15;
    let mut chart = money_per_category(
        root,
        ("Revenue by customer segment", 24),
        ("Segment", "Revenue (USD)"),
        &names,
        y_max,
        70,
        false,
    )?;
    chart.draw_series(rows.iter().enumerate().map(|(i, r)| {
        let i = i as i32;
        let mut bar = Rectangle::new(
            [(SegmentValue::Exact(i), 0.0), (SegmentValue::Exact(i + 1), r.revenue)],
            PALETTE[i as usize % PALETTE.len()].mix(0.85).filled(),
        );
        bar.set_margin(0, 0, 40, 40);
        bar
    }))?;
    chart.draw_series(rows.iter().enumerate().map(|(i, r)| {
        Text::new(
            format!("{} ({:.1}%)", money_label(r.revenue), r.share_pct),
            (SegmentValue::CenterOf(i as i32), r.revenue + y_max * 0.01),
            TextStyle::from(("sans-serif", 16).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom)),
        )
    }))?;
    Ok(())
}
