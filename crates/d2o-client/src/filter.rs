//! Applying a [`Predicate`] to rows, with SQL's three-valued logic (a null result drops the row).
//!
//! The server treats predicates as hints and may return more files than match; the client
//! filters every row again so the result is exact.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, Scalar, StringArray};
use arrow::compute::kernels::{boolean, cmp};
use arrow::compute::{CastOptions, cast_with_options, filter_record_batch, is_null};
use arrow::datatypes::{DataType, TimeUnit};
use arrow::record_batch::RecordBatch;
use arrow::util::display::FormatOptions;
use d2o_protocol::predicate::{CmpOp, Leaf, Predicate, ValueType};

use crate::error::{ClientError, Result};

/// The rows of `batch` for which `predicate` is true.
pub fn filter_batch(batch: &RecordBatch, predicate: &Predicate) -> Result<RecordBatch> {
    let mask = evaluate(batch, predicate)?;
    if mask.true_count() == batch.num_rows() {
        return Ok(batch.clone());
    }
    Ok(filter_record_batch(batch, &mask)?)
}

/// The predicate's value on every row (null where SQL says unknown).
pub fn evaluate(batch: &RecordBatch, predicate: &Predicate) -> Result<BooleanArray> {
    Ok(match predicate {
        Predicate::And(ps) => fold(batch, ps, boolean::and_kleene)?,
        Predicate::Or(ps) => fold(batch, ps, boolean::or_kleene)?,
        Predicate::Not(p) => boolean::not(&evaluate(batch, p)?)?,
        Predicate::IsNull(leaf) => is_null(leaf_array(batch, leaf)?.as_ref())?,
        Predicate::Compare { op, left, right } => {
            let l = leaf_datum(batch, left)?;
            let r = leaf_datum(batch, right)?;
            let (l, r): (&dyn arrow::array::Datum, &dyn arrow::array::Datum) = (&l, &r);
            match op {
                CmpOp::Equal => cmp::eq(l, r)?,
                CmpOp::LessThan => cmp::lt(l, r)?,
                CmpOp::LessThanOrEqual => cmp::lt_eq(l, r)?,
                CmpOp::GreaterThan => cmp::gt(l, r)?,
                CmpOp::GreaterThanOrEqual => cmp::gt_eq(l, r)?,
            }
        }
    })
}

fn fold(
    batch: &RecordBatch,
    ps: &[Predicate],
    f: fn(&BooleanArray, &BooleanArray) -> std::result::Result<BooleanArray, arrow::error::ArrowError>,
) -> Result<BooleanArray> {
    let mut acc: Option<BooleanArray> = None;
    for p in ps {
        let v = evaluate(batch, p)?;
        acc = Some(match acc {
            None => v,
            Some(a) => f(&a, &v)?,
        });
    }
    acc.ok_or_else(|| ClientError::invalid("an AND/OR predicate without children"))
}

/// The Arrow type values of a [`ValueType`] are compared as.
fn compare_type(t: ValueType) -> DataType {
    match t {
        ValueType::Bool => DataType::Boolean,
        ValueType::Int | ValueType::Long => DataType::Int64,
        ValueType::String => DataType::Utf8,
        ValueType::Date => DataType::Date32,
        ValueType::Float | ValueType::Double => DataType::Float64,
        ValueType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
    }
}

fn strict() -> CastOptions<'static> {
    CastOptions { safe: false, format_options: FormatOptions::default() }
}

/// A comparison side: a column array, or a literal as a one-element scalar.
enum Side {
    Column(ArrayRef),
    Literal(Scalar<ArrayRef>),
}

impl arrow::array::Datum for Side {
    fn get(&self) -> (&dyn Array, bool) {
        match self {
            Side::Column(a) => a.get(),
            Side::Literal(s) => s.get(),
        }
    }
}

fn leaf_datum(batch: &RecordBatch, leaf: &Leaf) -> Result<Side> {
    match leaf {
        Leaf::Column { .. } => Ok(Side::Column(leaf_array(batch, leaf)?)),
        Leaf::Literal { value, value_type } => {
            let one: ArrayRef = Arc::new(StringArray::from(vec![value.as_str()]));
            let v = cast_with_options(&one, &compare_type(*value_type), &strict())
                .map_err(|_| ClientError::invalid(format!("'{value}' is not a valid {value_type:?} literal")))?;
            Ok(Side::Literal(Scalar::new(v)))
        }
    }
}

fn leaf_array(batch: &RecordBatch, leaf: &Leaf) -> Result<ArrayRef> {
    match leaf {
        Leaf::Column { name, value_type } => {
            let column = column(batch, name)?;
            let want = compare_type(*value_type);
            if column.data_type() == &want {
                return Ok(column);
            }
            cast_with_options(&column, &want, &strict()).map_err(|e| {
                ClientError::invalid(format!(
                    "column '{name}' ({}) cannot be compared as {value_type:?}: {e}",
                    column.data_type()
                ))
            })
        }
        Leaf::Literal { value, value_type } => {
            let one: ArrayRef = Arc::new(StringArray::from(vec![value.as_str(); batch.num_rows()]));
            Ok(cast_with_options(&one, &compare_type(*value_type), &strict())?)
        }
    }
}

/// A column by logical name (case-insensitive); dotted names reach into structs.
fn column(batch: &RecordBatch, name: &str) -> Result<ArrayRef> {
    let find = |fields: &arrow::datatypes::Fields, n: &str| {
        fields
            .iter()
            .position(|f| f.name() == n)
            .or_else(|| fields.iter().position(|f| f.name().eq_ignore_ascii_case(n)))
    };
    if let Some(i) = find(batch.schema().fields(), name) {
        return Ok(batch.column(i).clone());
    }
    let mut parts = name.split('.');
    let first = parts.next().unwrap_or_default();
    let mut current = find(batch.schema().fields(), first)
        .map(|i| batch.column(i).clone())
        .ok_or_else(|| ClientError::invalid(format!("unknown column '{name}' in the filter")))?;
    for part in parts {
        let s = current
            .as_any()
            .downcast_ref::<arrow::array::StructArray>()
            .ok_or_else(|| ClientError::invalid(format!("unknown column '{name}' in the filter")))?;
        let i = find(s.fields(), part)
            .ok_or_else(|| ClientError::invalid(format!("unknown column '{name}' in the filter")))?;
        current = s.column(i).clone();
    }
    Ok(current)
}

#[cfg(test)]
mod tests {
    use arrow::array::{Int32Array, StringArray};
    use arrow::datatypes::{Field, Schema};

    use super::*;

    #[test]
    fn three_valued_filtering() {
        let schema =
            Arc::new(Schema::new(vec![Field::new("x", DataType::Int32, true), Field::new("s", DataType::Utf8, true)]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int32Array::from(vec![Some(1), None, Some(5), Some(7)])),
                Arc::new(StringArray::from(vec![Some("a"), Some("b"), None, Some("d")])),
            ],
        )
        .expect("batch");
        let x = || Leaf::Column { name: "X".into(), value_type: ValueType::Long };
        let lit = |v: &str| Leaf::Literal { value: v.into(), value_type: ValueType::Long };
        let gt = Predicate::Compare { op: CmpOp::GreaterThan, left: x(), right: lit("2") };
        assert_eq!(filter_batch(&batch, &gt).expect("filters").num_rows(), 2);
        // NOT (x > 2) drops the null row too.
        let not = Predicate::Not(Box::new(gt.clone()));
        assert_eq!(filter_batch(&batch, &not).expect("filters").num_rows(), 1);
        let or = Predicate::Or(vec![
            gt,
            Predicate::IsNull(Leaf::Column { name: "s".into(), value_type: ValueType::String }),
        ]);
        assert_eq!(filter_batch(&batch, &or).expect("filters").num_rows(), 2);
        let bad = Predicate::IsNull(Leaf::Column { name: "nope".into(), value_type: ValueType::Long });
        assert!(filter_batch(&batch, &bad).is_err());
    }
}
