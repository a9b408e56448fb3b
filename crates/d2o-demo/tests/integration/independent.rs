//! Reads the demo's Delta tables without the kernel: replays the JSON commits and reads the
//! Parquet files with the parquet crate.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Date32Type, Float64Type, Int32Type, Int64Type};
use d2o_demo::dataset::{Customer, Sale};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

fn actions(table: &Path, version: i64) -> Vec<serde_json::Value> {
    let path = table.join("_delta_log").join(format!("{version:020}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).expect("action JSON")).collect()
}

/// The table's metadata action (from the first commit that has one; the demo never changes it).
pub(crate) fn metadata(table: &Path) -> serde_json::Value {
    actions(table, 0).into_iter().find_map(|a| a.get("metaData").cloned()).expect("metaData in version 0")
}

/// Active files at `version`: path -> partition values.
fn active_files(table: &Path, version: i64) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut files = BTreeMap::new();
    for v in 0..=version {
        for a in actions(table, v) {
            if let Some(add) = a.get("add") {
                let pv = add["partitionValues"]
                    .as_object()
                    .map(|o| o.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned())).collect())
                    .unwrap_or_default();
                files.insert(add["path"].as_str().expect("path").to_owned(), pv);
            }
            if let Some(remove) = a.get("remove") {
                files.remove(remove["path"].as_str().expect("path"));
            }
        }
    }
    files
}

fn read(path: &Path) -> Vec<RecordBatch> {
    let file = File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let reader = ParquetRecordBatchReaderBuilder::try_new(file).expect("parquet").build().expect("reader");
    reader.map(|b| b.expect("batch")).collect()
}

fn col<'a>(b: &'a RecordBatch, name: &str) -> &'a dyn Array {
    b.column_by_name(name).unwrap_or_else(|| panic!("column {name}")).as_ref()
}

fn customers_of(batches: &[RecordBatch]) -> Vec<Customer> {
    let mut out = Vec::new();
    for b in batches {
        for i in 0..b.num_rows() {
            out.push(Customer {
                id: col(b, "id").as_primitive::<Int64Type>().value(i),
                name: col(b, "name").as_string::<i32>().value(i).to_owned(),
                email: col(b, "email").as_string::<i32>().value(i).to_owned(),
                segment: col(b, "segment").as_string::<i32>().value(i).to_owned(),
                region: col(b, "region").as_string::<i32>().value(i).to_owned(),
                age: col(b, "age").as_primitive::<Int32Type>().value(i),
                signup_date: col(b, "signup_date").as_primitive::<Date32Type>().value(i),
            });
        }
    }
    out
}

/// `customers` at `version`, by id.
pub(crate) fn customers_at(table: &Path, version: i64) -> Vec<Customer> {
    let mut out = Vec::new();
    for path in active_files(table, version).keys() {
        out.extend(customers_of(&read(&table.join(path))));
    }
    out.sort_by_key(|c| c.id);
    out
}

/// `sales` at `version`, by transaction id (region from the partition values).
pub(crate) fn sales_at(table: &Path, version: i64) -> Vec<Sale> {
    let mut out = Vec::new();
    for (path, pv) in active_files(table, version) {
        let region = pv.get("region").cloned().expect("region partition value");
        for b in read(&table.join(&path)) {
            for i in 0..b.num_rows() {
                out.push(Sale {
                    transaction_id: col(&b, "transaction_id").as_primitive::<Int64Type>().value(i),
                    customer_id: col(&b, "customer_id").as_primitive::<Int64Type>().value(i),
                    date: col(&b, "date").as_primitive::<Date32Type>().value(i),
                    product_category: col(&b, "product_category").as_string::<i32>().value(i).to_owned(),
                    quantity: col(&b, "quantity").as_primitive::<Int32Type>().value(i),
                    unit_price: col(&b, "unit_price").as_primitive::<Float64Type>().value(i),
                    amount: col(&b, "amount").as_primitive::<Float64Type>().value(i),
                    region: region.clone(),
                });
            }
        }
    }
    out.sort_by_key(|s| s.transaction_id);
    out
}

/// The change-data rows of one version: `(_change_type, customer)`.
pub(crate) fn change_data(table: &Path, version: i64) -> Vec<(String, Customer)> {
    let mut out = Vec::new();
    for a in actions(table, version) {
        if let Some(cdc) = a.get("cdc") {
            let batches = read(&table.join(cdc["path"].as_str().expect("path")));
            let customers = customers_of(&batches);
            let types: Vec<String> = batches
                .iter()
                .flat_map(|b| {
                    let c = col(b, "_change_type").as_string::<i32>();
                    (0..b.num_rows()).map(|i| c.value(i).to_owned()).collect::<Vec<_>>()
                })
                .collect();
            out.extend(types.into_iter().zip(customers));
        }
    }
    out
}
