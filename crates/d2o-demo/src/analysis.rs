//! The recipient's analysis: figures computed from the record batches `d2o-client` returns.
//!
//! Everything lands in [`Figures`], which is serialisable (`figures.json`), so tests and the
//! Python check compare numbers rather than parse HTML. Money is summed in whole cents
//! (amounts are whole cents), so revenue figures are exact; quantiles interpolate linearly
//! between order statistics (numpy's and pandas' default), standard deviations are sample
//! standard deviations (n - 1).

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Date32Type, Float64Type, Int32Type, Int64Type};
use serde::{Deserialize, Serialize};

use crate::DemoError;
use crate::dataset::{Customer, Sale};

/// Rows per version of a table, as read through the protocol.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionRows {
    pub version: i64,
    pub rows: usize,
}

/// Summary statistics of a numeric column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub count: usize,
    pub mean: f64,
    pub std_dev: f64,
    pub min: f64,
    pub q1: f64,
    pub median: f64,
    pub q3: f64,
    pub max: f64,
}

impl Summary {
    /// Statistics of `values` (empty input gives zeros).
    pub fn of(values: &[f64]) -> Summary {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let mean = if n == 0 { 0.0 } else { sorted.iter().sum::<f64>() / n as f64 };
        let var = if n < 2 { 0.0 } else { sorted.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64 };
        Summary {
            count: n,
            mean,
            std_dev: var.sqrt(),
            min: sorted.first().copied().unwrap_or_default(),
            q1: quantile(&sorted, 0.25),
            median: quantile(&sorted, 0.5),
            q3: quantile(&sorted, 0.75),
            max: sorted.last().copied().unwrap_or_default(),
        }
    }
}

/// The `q` quantile of sorted values, interpolating linearly between order statistics.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    match sorted.len() {
        0 => 0.0,
        1 => sorted[0],
        n => {
            let pos = q * (n - 1) as f64;
            let lo = pos.floor() as usize;
            let hi = pos.ceil() as usize;
            sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
        }
    }
}

/// Revenue of one customer segment (latest versions of both tables, sales joined to customers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentRevenue {
    pub segment: String,
    pub customers: usize,
    pub transactions: usize,
    pub revenue: f64,
    /// Percent of the total revenue.
    pub share_pct: f64,
}

/// One of the best customers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopCustomer {
    pub id: i64,
    pub name: String,
    pub segment: String,
    pub region: String,
    pub transactions: usize,
    pub revenue: f64,
}

/// The merged customer-sales view: one row per region and segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegionSegment {
    pub region: String,
    pub segment: String,
    pub customers: usize,
    pub transactions: usize,
    pub revenue: f64,
    pub avg_order_value: f64,
    pub avg_customer_age: f64,
}

/// Sale amounts of one product category (the box plots).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategoryAmounts {
    pub category: String,
    pub revenue: f64,
    pub amounts: Summary,
}

/// Revenue of one month.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonthRevenue {
    /// `YYYY-MM`
    pub month: String,
    pub transactions: usize,
    pub revenue: f64,
}

/// One bar of the histogram of sale amounts: `[lower, upper)` (the last bin includes its upper
/// bound).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistogramBin {
    pub lower: f64,
    pub upper: f64,
    pub count: usize,
}

/// A customer that moved segment, from the change feed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentMove {
    pub id: i64,
    pub name: String,
    pub from: String,
    pub to: String,
}

/// What the change feeds between two versions contain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeFigures {
    pub customers_from_version: i64,
    pub customers_to_version: i64,
    /// Rows per `_change_type` in the customers feed.
    pub customers_change_types: BTreeMap<String, usize>,
    pub segment_moves: Vec<SegmentMove>,
    pub sales_from_version: i64,
    pub sales_to_version: i64,
    pub sales_change_types: BTreeMap<String, usize>,
    pub sales_inserted_revenue: f64,
}

/// Every figure of the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    pub customers_versions: Vec<VersionRows>,
    pub sales_versions: Vec<VersionRows>,
    /// Sale amounts at the latest version.
    pub sales_amounts: Summary,
    pub sales_quantities: Summary,
    pub customer_ages: Summary,
    pub total_revenue: f64,
    pub revenue_by_segment: Vec<SegmentRevenue>,
    /// Customers per segment at the latest version (the demographics pie).
    pub customers_by_segment: BTreeMap<String, usize>,
    /// Customers per age band (`18-29`, `30-39`, ...).
    pub customers_by_age_band: BTreeMap<String, usize>,
    pub top_customers: Vec<TopCustomer>,
    pub region_segment: Vec<RegionSegment>,
    pub category_amounts: Vec<CategoryAmounts>,
    pub monthly_revenue: Vec<MonthRevenue>,
    pub amount_histogram: Vec<HistogramBin>,
    pub changes: ChangeFigures,
}

/// Bins of the histogram of sale amounts.
pub const HISTOGRAM_BINS: usize = 30;
/// Customers in the top list.
pub const TOP_CUSTOMERS: usize = 10;

/// Cents of an amount (amounts are whole cents; rounding absorbs binary representation).
pub fn cents(amount: f64) -> i64 {
    (amount * 100.0).round() as i64
}

fn money(cents: i64) -> f64 {
    cents as f64 / 100.0
}

/// The age band of an age: `18-29`, `30-39`, ..., `70+`.
pub fn age_band(age: i32) -> String {
    match age {
        ..30 => "18-29".to_owned(),
        70.. => "70+".to_owned(),
        a => format!("{}-{}", a / 10 * 10, a / 10 * 10 + 9),
    }
}

/// `YYYY-MM` of a date (days since 1970-01-01).
pub fn month_of(days: i32) -> String {
    chrono::DateTime::from_timestamp(i64::from(days) * 86_400, 0)
        .map(|d| d.format("%Y-%m").to_string())
        .unwrap_or_default()
}

/// The inputs of [`Figures::compute`], all as read by the recipient.
#[derive(Debug, Clone)]
pub struct Inputs {
    pub customers: Vec<Customer>,
    pub sales: Vec<Sale>,
    pub customers_versions: Vec<VersionRows>,
    pub sales_versions: Vec<VersionRows>,
    pub changes: ChangeFigures,
}

impl Figures {
    /// Computes every figure from the latest customers and sales.
    pub fn compute(inputs: Inputs) -> Figures {
        let Inputs { customers, sales, customers_versions, sales_versions, changes } = inputs;
        let by_id: BTreeMap<i64, &Customer> = customers.iter().map(|c| (c.id, c)).collect();
        let amounts: Vec<f64> = sales.iter().map(|s| s.amount).collect();
        let total_cents: i64 = sales.iter().map(|s| cents(s.amount)).sum();

        // Per customer: transactions and cents.
        let mut per_customer: BTreeMap<i64, (usize, i64)> = BTreeMap::new();
        for s in &sales {
            let e = per_customer.entry(s.customer_id).or_default();
            e.0 += 1;
            e.1 += cents(s.amount);
        }

        let mut customers_by_segment: BTreeMap<String, usize> = BTreeMap::new();
        let mut customers_by_age_band: BTreeMap<String, usize> = BTreeMap::new();
        for c in &customers {
            *customers_by_segment.entry(c.segment.clone()).or_default() += 1;
            *customers_by_age_band.entry(age_band(c.age)).or_default() += 1;
        }

        // Revenue by segment: each sale counts for its customer's current segment.
        let mut segment_sales: BTreeMap<String, (usize, i64)> = BTreeMap::new();
        for s in &sales {
            let segment = by_id.get(&s.customer_id).map_or("(unknown)", |c| c.segment.as_str());
            let e = segment_sales.entry(segment.to_owned()).or_default();
            e.0 += 1;
            e.1 += cents(s.amount);
        }
        let mut revenue_by_segment: Vec<SegmentRevenue> = segment_sales
            .iter()
            .map(|(segment, (transactions, c))| SegmentRevenue {
                segment: segment.clone(),
                customers: customers_by_segment.get(segment).copied().unwrap_or_default(),
                transactions: *transactions,
                revenue: money(*c),
                share_pct: if total_cents == 0 { 0.0 } else { *c as f64 * 100.0 / total_cents as f64 },
            })
            .collect();
        revenue_by_segment.sort_by(|a, b| b.revenue.total_cmp(&a.revenue).then_with(|| a.segment.cmp(&b.segment)));

        let mut ranked: Vec<(i64, usize, i64)> = per_customer.iter().map(|(id, (n, c))| (*id, *n, *c)).collect();
        ranked.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)));
        let top_customers = ranked
            .iter()
            .take(TOP_CUSTOMERS)
            .map(|(id, n, c)| {
                let customer = by_id.get(id);
                TopCustomer {
                    id: *id,
                    name: customer.map(|c| c.name.clone()).unwrap_or_default(),
                    segment: customer.map(|c| c.segment.clone()).unwrap_or_default(),
                    region: customer.map(|c| c.region.clone()).unwrap_or_default(),
                    transactions: *n,
                    revenue: money(*c),
                }
            })
            .collect();

        // The merged view: customers (all of them, buyers or not) and sales per region and segment.
        #[derive(Default)]
        struct Cell {
            customers: usize,
            ages: i64,
            transactions: usize,
            cents: i64,
        }
        let mut cells: BTreeMap<(String, String), Cell> = BTreeMap::new();
        for c in &customers {
            let cell = cells.entry((c.region.clone(), c.segment.clone())).or_default();
            cell.customers += 1;
            cell.ages += i64::from(c.age);
        }
        for s in &sales {
            if let Some(c) = by_id.get(&s.customer_id) {
                let cell = cells.entry((c.region.clone(), c.segment.clone())).or_default();
                cell.transactions += 1;
                cell.cents += cents(s.amount);
            }
        }
        let region_segment = cells
            .into_iter()
            .map(|((region, segment), cell)| RegionSegment {
                region,
                segment,
                customers: cell.customers,
                transactions: cell.transactions,
                revenue: money(cell.cents),
                avg_order_value: if cell.transactions == 0 {
                    0.0
                } else {
                    cell.cents as f64 / 100.0 / cell.transactions as f64
                },
                avg_customer_age: if cell.customers == 0 { 0.0 } else { cell.ages as f64 / cell.customers as f64 },
            })
            .collect();

        let mut by_category: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for s in &sales {
            by_category.entry(s.product_category.clone()).or_default().push(s.amount);
        }
        let category_amounts = by_category
            .into_iter()
            .map(|(category, amounts)| CategoryAmounts {
                revenue: money(amounts.iter().map(|a| cents(*a)).sum()),
                amounts: Summary::of(&amounts),
                category,
            })
            .collect();

        let mut months: BTreeMap<String, (usize, i64)> = BTreeMap::new();
        for s in &sales {
            let e = months.entry(month_of(s.date)).or_default();
            e.0 += 1;
            e.1 += cents(s.amount);
        }
        let monthly_revenue = months
            .into_iter()
            .map(|(month, (transactions, c))| MonthRevenue { month, transactions, revenue: money(c) })
            .collect();

        let sales_amounts = Summary::of(&amounts);
        let amount_histogram = histogram(&amounts, HISTOGRAM_BINS);
        let quantities: Vec<f64> = sales.iter().map(|s| f64::from(s.quantity)).collect();
        let ages: Vec<f64> = customers.iter().map(|c| f64::from(c.age)).collect();

        Figures {
            customers_versions,
            sales_versions,
            sales_amounts,
            sales_quantities: Summary::of(&quantities),
            customer_ages: Summary::of(&ages),
            total_revenue: money(total_cents),
            revenue_by_segment,
            customers_by_segment,
            customers_by_age_band,
            top_customers,
            region_segment,
            category_amounts,
            monthly_revenue,
            amount_histogram,
            changes,
        }
    }
}

/// `bins` equal-width bins from 0 to the largest value.
pub fn histogram(values: &[f64], bins: usize) -> Vec<HistogramBin> {
    let max = values.iter().copied().fold(0.0_f64, f64::max);
    if bins == 0 || max <= 0.0 {
        return Vec::new();
    }
    let width = max / bins as f64;
    let mut counts = vec![0usize; bins];
    for v in values {
        let i = ((v / width) as usize).min(bins - 1);
        counts[i] += 1;
    }
    counts
        .into_iter()
        .enumerate()
        .map(|(i, count)| HistogramBin { lower: i as f64 * width, upper: (i + 1) as f64 * width, count })
        .collect()
}

// ---- record batches to rows ----------------------------------------------------------------

fn column<'a>(batch: &'a RecordBatch, name: &str, table: &str) -> Result<&'a std::sync::Arc<dyn Array>, DemoError> {
    let index = batch
        .schema()
        .fields()
        .iter()
        .position(|f| f.name().eq_ignore_ascii_case(name))
        .ok_or_else(|| DemoError::Analysis(format!("{table}: no column '{name}' in what the server returned")))?;
    Ok(batch.column(index))
}

/// The column as `to` (casting what the client returned, e.g. a view or dictionary string).
fn cast(batch: &RecordBatch, name: &str, to: &DataType, table: &str) -> Result<std::sync::Arc<dyn Array>, DemoError> {
    let array = column(batch, name, table)?;
    if array.data_type() == to {
        return Ok(array.clone());
    }
    arrow::compute::cast(array, to).map_err(|e| DemoError::Analysis(format!("{table}.{name}: {e}")))
}

fn strings(batch: &RecordBatch, name: &str, table: &str) -> Result<Vec<String>, DemoError> {
    let a = cast(batch, name, &DataType::Utf8, table)?;
    Ok(a.as_string::<i32>().iter().map(|v| v.unwrap_or_default().to_owned()).collect())
}

fn longs(batch: &RecordBatch, name: &str, table: &str) -> Result<Vec<i64>, DemoError> {
    let a = cast(batch, name, &DataType::Int64, table)?;
    Ok(a.as_primitive::<Int64Type>().iter().map(Option::unwrap_or_default).collect())
}

fn ints(batch: &RecordBatch, name: &str, table: &str) -> Result<Vec<i32>, DemoError> {
    let a = cast(batch, name, &DataType::Int32, table)?;
    Ok(a.as_primitive::<Int32Type>().iter().map(Option::unwrap_or_default).collect())
}

fn dates(batch: &RecordBatch, name: &str, table: &str) -> Result<Vec<i32>, DemoError> {
    let a = cast(batch, name, &DataType::Date32, table)?;
    Ok(a.as_primitive::<Date32Type>().iter().map(Option::unwrap_or_default).collect())
}

fn doubles(batch: &RecordBatch, name: &str, table: &str) -> Result<Vec<f64>, DemoError> {
    let a = cast(batch, name, &DataType::Float64, table)?;
    Ok(a.as_primitive::<Float64Type>().iter().map(Option::unwrap_or_default).collect())
}

/// Customers from record batches (any column order; extra columns ignored), sorted by id.
pub fn customers_from_batches(batches: &[RecordBatch]) -> Result<Vec<Customer>, DemoError> {
    let mut out = customers_from_batches_unsorted(batches)?;
    out.sort_by_key(|c| c.id);
    Ok(out)
}

/// Customers from record batches in the batches' row order.
pub fn customers_from_batches_unsorted(batches: &[RecordBatch]) -> Result<Vec<Customer>, DemoError> {
    let mut out = Vec::new();
    for b in batches {
        let t = "customers";
        let (id, name, email, segment, region, age, signup) = (
            longs(b, "id", t)?,
            strings(b, "name", t)?,
            strings(b, "email", t)?,
            strings(b, "segment", t)?,
            strings(b, "region", t)?,
            ints(b, "age", t)?,
            dates(b, "signup_date", t)?,
        );
        for i in 0..b.num_rows() {
            out.push(Customer {
                id: id[i],
                name: name[i].clone(),
                email: email[i].clone(),
                segment: segment[i].clone(),
                region: region[i].clone(),
                age: age[i],
                signup_date: signup[i],
            });
        }
    }
    Ok(out)
}

/// Sales from record batches (any column order; extra columns ignored), sorted by transaction id.
pub fn sales_from_batches(batches: &[RecordBatch]) -> Result<Vec<Sale>, DemoError> {
    let mut out = sales_from_batches_unsorted(batches)?;
    out.sort_by_key(|s| s.transaction_id);
    Ok(out)
}

/// Sales from record batches in the batches' row order.
pub fn sales_from_batches_unsorted(batches: &[RecordBatch]) -> Result<Vec<Sale>, DemoError> {
    let mut out = Vec::new();
    for b in batches {
        let t = "sales";
        let (tid, cid, date, category, quantity, price, amount, region) = (
            longs(b, "transaction_id", t)?,
            longs(b, "customer_id", t)?,
            dates(b, "date", t)?,
            strings(b, "product_category", t)?,
            ints(b, "quantity", t)?,
            doubles(b, "unit_price", t)?,
            doubles(b, "amount", t)?,
            strings(b, "region", t)?,
        );
        for i in 0..b.num_rows() {
            out.push(Sale {
                transaction_id: tid[i],
                customer_id: cid[i],
                date: date[i],
                product_category: category[i].clone(),
                quantity: quantity[i],
                unit_price: price[i],
                amount: amount[i],
                region: region[i].clone(),
            });
        }
    }
    Ok(out)
}

/// Values of the `_change_type` column (and the row's other columns through `rows`).
pub fn change_types(batches: &[RecordBatch], table: &str) -> Result<Vec<String>, DemoError> {
    let mut out = Vec::new();
    for b in batches {
        out.extend(strings(b, d2o_client::CHANGE_TYPE, table)?);
    }
    Ok(out)
}

/// Counts per value.
pub fn count_values(values: &[String]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for v in values {
        *out.entry(v.clone()).or_default() += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_like_numpy() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile(&v, 0.5), 2.5);
        assert_eq!(quantile(&v, 0.25), 1.75);
        let s = Summary::of(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]);
        assert!((s.std_dev - 2.138_089_935_299_395).abs() < 1e-12);
        assert_eq!(age_band(18), "18-29");
        assert_eq!(age_band(45), "40-49");
        assert_eq!(age_band(79), "70+");
        assert_eq!(month_of(19_723), "2024-01");
    }
}
