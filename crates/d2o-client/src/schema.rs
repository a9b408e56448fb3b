//! A shared table's schema: the Delta `schemaString`, its Arrow form, and column mapping.
//!
//! [`TableSchema`] keeps, for every field, the logical name a recipient sees and the physical
//! name (or field id) the data files use, so that files written with column mapping read back
//! under their logical names.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use serde_json::Value;

use crate::error::{ClientError, Result};

/// `delta.columnMapping.physicalName` in a field's metadata.
const PHYSICAL_NAME: &str = "delta.columnMapping.physicalName";
/// `delta.columnMapping.id` in a field's metadata.
const FIELD_ID: &str = "delta.columnMapping.id";

/// A Delta type.
#[derive(Debug, Clone, PartialEq)]
pub enum DeltaType {
    /// `string`, `long`, `decimal(10,2)`, `timestamp_ntz`, ...
    Primitive(String),
    Struct(Vec<DeltaField>),
    Array {
        element: Box<DeltaType>,
        contains_null: bool,
    },
    Map {
        key: Box<DeltaType>,
        value: Box<DeltaType>,
        value_contains_null: bool,
    },
}

/// A field of a Delta struct, with its column-mapping names.
#[derive(Debug, Clone, PartialEq)]
pub struct DeltaField {
    /// The logical name.
    pub name: String,
    pub data_type: DeltaType,
    pub nullable: bool,
    /// The name in the data files (the logical name without column mapping).
    pub physical_name: String,
    /// The Parquet field id in `id` column-mapping mode.
    pub field_id: Option<i32>,
}

/// The schema of a shared table.
#[derive(Debug, Clone, PartialEq)]
pub struct TableSchema {
    pub fields: Vec<DeltaField>,
}

impl TableSchema {
    /// Parses a `schemaString`.
    pub fn parse(schema_string: &str) -> Result<Self> {
        let value: Value = serde_json::from_str(schema_string)
            .map_err(|e| ClientError::protocol(format!("schemaString is not JSON: {e}")))?;
        match parse_type(&value)? {
            DeltaType::Struct(fields) => Ok(TableSchema { fields }),
            _ => Err(ClientError::protocol("schemaString is not a struct")),
        }
    }

    /// The field with this logical name (case-insensitive).
    pub fn field(&self, name: &str) -> Option<&DeltaField> {
        self.fields.iter().find(|f| f.name.eq_ignore_ascii_case(name))
    }

    /// The Arrow schema recipients see: logical names, Delta types mapped to Arrow.
    pub fn arrow_schema(&self) -> Result<SchemaRef> {
        let fields = self.fields.iter().map(DeltaField::arrow_field).collect::<Result<Vec<_>>>()?;
        Ok(Arc::new(Schema::new(fields)))
    }
}

impl DeltaField {
    /// The Arrow field under the logical name.
    ///
    /// Always nullable: data files do not always honour `nullable: false` (and a schema may
    /// evolve), and one batch with an unexpected null must not fail a whole read.
    pub fn arrow_field(&self) -> Result<Field> {
        Ok(Field::new(&self.name, arrow_type(&self.data_type)?, true))
    }
}

fn parse_field(v: &Value) -> Result<DeltaField> {
    let name = v
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| ClientError::protocol("a schema field has no name"))?
        .to_owned();
    let data_type =
        parse_type(v.get("type").ok_or_else(|| ClientError::protocol(format!("field {name} has no type")))?)?;
    let nullable = v.get("nullable").and_then(Value::as_bool).unwrap_or(true);
    let metadata = v.get("metadata");
    let physical_name =
        metadata.and_then(|m| m.get(PHYSICAL_NAME)).and_then(Value::as_str).map(str::to_owned).unwrap_or(name.clone());
    let field_id = metadata.and_then(|m| m.get(FIELD_ID)).and_then(Value::as_i64).and_then(|i| i32::try_from(i).ok());
    Ok(DeltaField { name, data_type, nullable, physical_name, field_id })
}

fn parse_type(v: &Value) -> Result<DeltaType> {
    match v {
        Value::String(s) => Ok(DeltaType::Primitive(s.clone())),
        Value::Object(o) => match o.get("type").and_then(Value::as_str) {
            Some("struct") => {
                let fields = o
                    .get("fields")
                    .and_then(Value::as_array)
                    .ok_or_else(|| ClientError::protocol("a struct type has no fields"))?;
                Ok(DeltaType::Struct(fields.iter().map(parse_field).collect::<Result<_>>()?))
            }
            Some("array") => Ok(DeltaType::Array {
                element: Box::new(parse_type(
                    o.get("elementType").ok_or_else(|| ClientError::protocol("array without elementType"))?,
                )?),
                contains_null: o.get("containsNull").and_then(Value::as_bool).unwrap_or(true),
            }),
            Some("map") => Ok(DeltaType::Map {
                key: Box::new(parse_type(
                    o.get("keyType").ok_or_else(|| ClientError::protocol("map without keyType"))?,
                )?),
                value: Box::new(parse_type(
                    o.get("valueType").ok_or_else(|| ClientError::protocol("map without valueType"))?,
                )?),
                value_contains_null: o.get("valueContainsNull").and_then(Value::as_bool).unwrap_or(true),
            }),
            other => Err(ClientError::Unsupported(format!("schema type {other:?}"))),
        },
        _ => Err(ClientError::protocol(format!("invalid schema type {v}"))),
    }
}

/// The Arrow type of a Delta type.
pub fn arrow_type(t: &DeltaType) -> Result<DataType> {
    Ok(match t {
        DeltaType::Primitive(p) => primitive(p)?,
        DeltaType::Struct(fields) => {
            DataType::Struct(fields.iter().map(DeltaField::arrow_field).collect::<Result<Vec<_>>>()?.into())
        }
        DeltaType::Array { element, .. } => DataType::List(Arc::new(Field::new("element", arrow_type(element)?, true))),
        DeltaType::Map { key, value, .. } => DataType::Map(
            Arc::new(Field::new(
                "key_value",
                DataType::Struct(Fields::from(vec![
                    Field::new("key", arrow_type(key)?, false),
                    Field::new("value", arrow_type(value)?, true),
                ])),
                false,
            )),
            false,
        ),
    })
}

fn primitive(p: &str) -> Result<DataType> {
    Ok(match p {
        "string" => DataType::Utf8,
        "long" => DataType::Int64,
        "integer" => DataType::Int32,
        "short" => DataType::Int16,
        "byte" => DataType::Int8,
        "float" => DataType::Float32,
        "double" => DataType::Float64,
        "boolean" => DataType::Boolean,
        "binary" => DataType::Binary,
        "date" => DataType::Date32,
        "timestamp" => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        "timestamp_ntz" => DataType::Timestamp(TimeUnit::Microsecond, None),
        "void" | "null" => DataType::Null,
        other => {
            if let Some(inner) = other.strip_prefix("decimal(").and_then(|s| s.strip_suffix(')')) {
                let (p, s) = inner
                    .split_once(',')
                    .ok_or_else(|| ClientError::protocol(format!("invalid decimal type {other}")))?;
                let precision: u8 =
                    p.trim().parse().map_err(|_| ClientError::protocol(format!("invalid decimal type {other}")))?;
                let scale: i8 =
                    s.trim().parse().map_err(|_| ClientError::protocol(format!("invalid decimal type {other}")))?;
                if precision <= 38 {
                    DataType::Decimal128(precision, scale)
                } else {
                    DataType::Decimal256(precision, scale)
                }
            } else {
                return Err(ClientError::Unsupported(format!("Delta type '{other}'")));
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_types_and_column_mapping() {
        let s = TableSchema::parse(
            r#"{"type":"struct","fields":[
              {"name":"a","type":"decimal(10,2)","nullable":true,"metadata":{"delta.columnMapping.id":1,"delta.columnMapping.physicalName":"col-1"}},
              {"name":"m","type":{"type":"map","keyType":"string","valueType":{"type":"array","elementType":"timestamp","containsNull":true},"valueContainsNull":true},"nullable":true,"metadata":{}}]}"#,
        )
        .expect("valid");
        assert_eq!(s.fields[0].physical_name, "col-1");
        assert_eq!(s.fields[0].field_id, Some(1));
        assert_eq!(s.fields[1].physical_name, "m");
        let arrow = s.arrow_schema().expect("maps");
        assert_eq!(arrow.field(0).data_type(), &DataType::Decimal128(10, 2));
        assert!(matches!(arrow.field(1).data_type(), DataType::Map(_, false)));
        assert!(s.field("A").is_some());
    }
}
