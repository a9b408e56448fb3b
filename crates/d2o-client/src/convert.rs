//! Turning what a data file holds into the table's logical columns.
//!
//! Files may name columns by physical name (column mapping), carry other Arrow types than the
//! table's (INT96 or nanosecond timestamps, unannotated small integers), lack columns added
//! later (schema evolution), or lack partition columns. [`conform`] fixes all of that one column
//! at a time, recursively through structs, lists and maps; [`partition_column`] builds the
//! constant columns of partition values.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, ListArray, MapArray, StringArray, StructArray, UInt32Array, new_null_array};
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{DataType, Fields};
use arrow::util::display::FormatOptions;

use crate::error::{ClientError, Result};
use crate::schema::{DeltaField, DeltaType, arrow_type};

const FIELD_ID_KEY: &str = "PARQUET:field_id";

/// Finds the column of `target` among a file's fields: physical name, then field id, then
/// logical name (all case-insensitive, as the connectors match).
pub(crate) fn find_field(fields: &Fields, target: &DeltaField) -> Option<usize> {
    let by_name = |name: &str| {
        fields
            .iter()
            .position(|f| f.name() == name)
            .or_else(|| fields.iter().position(|f| f.name().eq_ignore_ascii_case(name)))
    };
    by_name(&target.physical_name)
        .or_else(|| {
            let id = target.field_id?.to_string();
            fields.iter().position(|f| f.metadata().get(FIELD_ID_KEY) == Some(&id))
        })
        .or_else(|| by_name(&target.name))
}

/// Converts `array` (a file's column) to the Arrow form of `target`'s type, under logical names.
pub(crate) fn conform(array: &ArrayRef, target: &DeltaType) -> Result<ArrayRef> {
    let want = arrow_type(target)?;
    if array.data_type() == &want {
        return Ok(array.clone());
    }
    match (target, array.data_type()) {
        (DeltaType::Struct(children), DataType::Struct(_)) => {
            let s = array
                .as_any()
                .downcast_ref::<StructArray>()
                .ok_or_else(|| ClientError::protocol("struct column is not a StructArray"))?;
            let DataType::Struct(want_fields) = &want else { return Err(ClientError::protocol("not a struct")) };
            let mut columns = Vec::with_capacity(children.len());
            for child in children {
                let column = match find_field(s.fields(), child) {
                    Some(i) => conform(s.column(i), &child.data_type)?,
                    None => new_null_array(&arrow_type(&child.data_type)?, s.len()),
                };
                columns.push(column);
            }
            Ok(Arc::new(StructArray::try_new(want_fields.clone(), columns, s.nulls().cloned())?))
        }
        (DeltaType::Array { element, .. }, DataType::List(_)) => {
            let l = array
                .as_any()
                .downcast_ref::<ListArray>()
                .ok_or_else(|| ClientError::protocol("list column is not a ListArray"))?;
            let DataType::List(want_field) = &want else { return Err(ClientError::protocol("not a list")) };
            let values = conform(l.values(), element)?;
            Ok(Arc::new(ListArray::try_new(want_field.clone(), l.offsets().clone(), values, l.nulls().cloned())?))
        }
        (DeltaType::Map { key, value, .. }, DataType::Map(_, _)) => {
            let m = array
                .as_any()
                .downcast_ref::<MapArray>()
                .ok_or_else(|| ClientError::protocol("map column is not a MapArray"))?;
            let DataType::Map(entries_field, sorted) = &want else { return Err(ClientError::protocol("not a map")) };
            let keys = conform(m.keys(), key)?;
            let values = conform(m.values(), value)?;
            let DataType::Struct(entry_fields) = entries_field.data_type() else {
                return Err(ClientError::protocol("map entries are not a struct"));
            };
            let entries = StructArray::try_new(entry_fields.clone(), vec![keys, values], None)?;
            Ok(Arc::new(MapArray::try_new(
                entries_field.clone(),
                m.offsets().clone(),
                entries,
                m.nulls().cloned(),
                *sorted,
            )?))
        }
        _ => {
            Ok(cast_with_options(array, &want, &CastOptions { safe: false, format_options: FormatOptions::default() })?)
        }
    }
}

/// A column of `rows` copies of a partition value, converted from its string form
/// (protocol.md §3.5; `None` is null) to the column's type.
pub(crate) fn partition_column(value: Option<&str>, target: &DeltaType, rows: usize) -> Result<ArrayRef> {
    let want = arrow_type(target)?;
    let Some(value) = value else { return Ok(new_null_array(&want, rows)) };
    let one: ArrayRef = Arc::new(StringArray::from(vec![normalise_partition_value(value, target)]));
    let converted =
        cast_with_options(&one, &want, &CastOptions { safe: false, format_options: FormatOptions::default() })
            .map_err(|e| ClientError::protocol(format!("partition value '{value}' is not a valid {want}: {e}")))?;
    let indices = UInt32Array::from(vec![0u32; rows]);
    Ok(arrow::compute::take(&converted, &indices, None)?)
}

fn normalise_partition_value(value: &str, target: &DeltaType) -> String {
    match target {
        // Delta writes timestamps as `2021-01-01 00:00:00[.ffffff]` in UTC, sometimes with an
        // ISO `T`/`Z`; Arrow's cast reads both.
        DeltaType::Primitive(p) if p == "boolean" => value.to_ascii_lowercase(),
        _ => value.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Date32Array, Int64Array, TimestampMicrosecondArray};

    use super::*;

    #[test]
    fn partition_values_take_the_column_type() {
        let d = partition_column(Some("2021-04-28"), &DeltaType::Primitive("date".into()), 2).expect("date");
        let d = d.as_any().downcast_ref::<Date32Array>().expect("date32");
        assert_eq!(d.len(), 2);
        assert_eq!(d.value(1), 18745);
        let n = partition_column(None, &DeltaType::Primitive("long".into()), 3).expect("null");
        assert_eq!(n.null_count(), 3);
        let t = partition_column(Some("2021-01-01 00:00:01"), &DeltaType::Primitive("timestamp".into()), 1)
            .expect("timestamp");
        assert_eq!(t.as_any().downcast_ref::<TimestampMicrosecondArray>().expect("ts").value(0), 1_609_459_201_000_000);
        let dec = partition_column(Some("1.50"), &DeltaType::Primitive("decimal(5,2)".into()), 1).expect("decimal");
        assert_eq!(dec.data_type(), &DataType::Decimal128(5, 2));
        assert!(partition_column(Some("x"), &DeltaType::Primitive("long".into()), 1).is_err());
        let l = partition_column(Some("-3"), &DeltaType::Primitive("long".into()), 1).expect("long");
        assert_eq!(l.as_any().downcast_ref::<Int64Array>().expect("i64").value(0), -3);
    }
}
