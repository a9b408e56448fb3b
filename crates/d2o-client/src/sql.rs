//! DataFusion over shared tables (feature `sql`).
//!
//! [`SharedTableProvider`] is a `TableProvider`: projections become the read's columns, filters that
//! map onto the protocol's predicates become `jsonPredicateHints` (and are re-applied by the
//! client and, as they are reported `Inexact`, by DataFusion), and a limit becomes `limitHint`.
//! [`register_profile`] exposes every table of a profile as `share.schema.table`.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use d2o_protocol::predicate::{CmpOp, Leaf, Predicate, ValueType};
use datafusion::catalog::{CatalogProvider, SchemaProvider, Session, TableProvider};
use datafusion::common::{DataFusionError, ScalarValue};
use datafusion::datasource::TableType;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use datafusion::prelude::SessionContext;
use futures::TryStreamExt;

use crate::client::Client;
use crate::error::Result;
use crate::profile::TableName;
use crate::schema::{DeltaType, TableSchema};

fn df_err(e: crate::ClientError) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// A shared table as a DataFusion table (its latest version, read when a query runs).
pub struct SharedTableProvider {
    client: Client,
    name: TableName,
    schema: TableSchema,
    arrow_schema: SchemaRef,
}

impl fmt::Debug for SharedTableProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedTableProvider").field("name", &self.name.to_string()).finish_non_exhaustive()
    }
}

impl SharedTableProvider {
    /// Reads the table's metadata to learn its schema.
    pub async fn try_new(client: Client, name: TableName) -> Result<Self> {
        let md = client.metadata(&name, None).await?;
        let arrow_schema = md.schema.arrow_schema()?;
        Ok(SharedTableProvider { client, name, schema: md.schema, arrow_schema })
    }

    /// The predicate of a DataFusion filter, when the protocol can express it.
    fn predicate(&self, e: &Expr) -> Option<Predicate> {
        expr_to_predicate(e, &self.schema)
    }
}

#[async_trait]
impl TableProvider for SharedTableProvider {
    fn schema(&self) -> SchemaRef {
        self.arrow_schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> datafusion::error::Result<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| match self.predicate(f) {
                Some(_) => TableProviderFilterPushDown::Inexact,
                None => TableProviderFilterPushDown::Unsupported,
            })
            .collect())
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let projected = match projection {
            Some(p) => Arc::new(self.arrow_schema.project(p)?),
            None => self.arrow_schema.clone(),
        };
        let mut query = self.client.table_named(self.name.clone());
        if let Some(p) = projection {
            query = query.columns(p.iter().map(|i| self.arrow_schema.field(*i).name().clone()));
        }
        for f in filters {
            if let Some(p) = self.predicate(f) {
                query = query.filter(p);
            }
        }
        if let Some(l) = limit {
            query = query.limit(l as u64);
        }
        let partition: Arc<dyn PartitionStream> = Arc::new(SharedPartition { schema: projected.clone(), query });
        Ok(Arc::new(StreamingTableExec::try_new(projected, vec![partition], None, Vec::new(), false, limit)?))
    }
}

/// The one partition of a [`SharedTableProvider`] scan; the client parallelises inside it.
struct SharedPartition {
    schema: SchemaRef,
    query: crate::TableQuery,
}

impl fmt::Debug for SharedPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedPartition").finish_non_exhaustive()
    }
}

impl PartitionStream for SharedPartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let query = self.query.clone();
        let stream = futures::stream::once(async move { query.load_stream().await.map_err(df_err) })
            .map_ok(|s| s.map_err(df_err))
            .try_flatten();
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), stream))
    }
}

/// Translates the filters DataFusion offers into protocol predicates (`None` when a part
/// cannot be expressed; `AND` keeps the parts that can).
fn expr_to_predicate(e: &Expr, schema: &TableSchema) -> Option<Predicate> {
    match e {
        Expr::BinaryExpr(b) => match b.op {
            Operator::And => {
                let l = expr_to_predicate(&b.left, schema);
                let r = expr_to_predicate(&b.right, schema);
                match (l, r) {
                    (Some(l), Some(r)) => Some(Predicate::And(vec![l, r])),
                    _ => None,
                }
            }
            Operator::Or => {
                Some(Predicate::Or(vec![expr_to_predicate(&b.left, schema)?, expr_to_predicate(&b.right, schema)?]))
            }
            op => {
                let (column, literal, flipped) = match (strip(&b.left), strip(&b.right)) {
                    (Expr::Column(c), Expr::Literal(v, _)) => (c, v, false),
                    (Expr::Literal(v, _), Expr::Column(c)) => (c, v, true),
                    _ => return None,
                };
                let value_type = column_type(&column.name, schema)?;
                let value = literal_text(literal)?;
                let col = Leaf::Column { name: column.name.clone(), value_type };
                let lit = Leaf::Literal { value, value_type };
                let (left, right) = if flipped { (lit, col) } else { (col, lit) };
                let cmp = |op| Predicate::Compare { op, left: left.clone(), right: right.clone() };
                Some(match op {
                    Operator::Eq => cmp(CmpOp::Equal),
                    Operator::NotEq => Predicate::Not(Box::new(cmp(CmpOp::Equal))),
                    Operator::Lt => cmp(CmpOp::LessThan),
                    Operator::LtEq => cmp(CmpOp::LessThanOrEqual),
                    Operator::Gt => cmp(CmpOp::GreaterThan),
                    Operator::GtEq => cmp(CmpOp::GreaterThanOrEqual),
                    _ => return None,
                })
            }
        },
        Expr::IsNull(inner) => match strip(inner) {
            Expr::Column(c) => Some(Predicate::IsNull(Leaf::Column {
                name: c.name.clone(),
                value_type: column_type(&c.name, schema)?,
            })),
            _ => None,
        },
        Expr::IsNotNull(inner) => match strip(inner) {
            Expr::Column(c) => Some(Predicate::Not(Box::new(Predicate::IsNull(Leaf::Column {
                name: c.name.clone(),
                value_type: column_type(&c.name, schema)?,
            })))),
            _ => None,
        },
        Expr::Not(inner) => Some(Predicate::Not(Box::new(expr_to_predicate(inner, schema)?))),
        _ => None,
    }
}

/// Casts DataFusion adds for type coercion do not change which rows match here.
fn strip(e: &Expr) -> &Expr {
    match e {
        Expr::Cast(c) => strip(&c.expr),
        Expr::TryCast(c) => strip(&c.expr),
        other => other,
    }
}

fn column_type(name: &str, schema: &TableSchema) -> Option<ValueType> {
    match &schema.field(name)?.data_type {
        DeltaType::Primitive(p) => ValueType::for_delta_type(p),
        _ => None,
    }
}

fn literal_text(v: &ScalarValue) -> Option<String> {
    if v.is_null() {
        return None;
    }
    Some(match v {
        ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s)) => s.clone(),
        ScalarValue::Boolean(Some(b)) => b.to_string(),
        ScalarValue::Int8(Some(i)) => i.to_string(),
        ScalarValue::Int16(Some(i)) => i.to_string(),
        ScalarValue::Int32(Some(i)) => i.to_string(),
        ScalarValue::Int64(Some(i)) => i.to_string(),
        ScalarValue::UInt8(Some(i)) => i.to_string(),
        ScalarValue::UInt16(Some(i)) => i.to_string(),
        ScalarValue::UInt32(Some(i)) => i.to_string(),
        ScalarValue::UInt64(Some(i)) => i.to_string(),
        ScalarValue::Float32(Some(f)) => f.to_string(),
        ScalarValue::Float64(Some(f)) => f.to_string(),
        ScalarValue::Date32(Some(d)) => {
            chrono::NaiveDate::from_num_days_from_ce_opt(d + 719_163)?.format("%Y-%m-%d").to_string()
        }
        ScalarValue::TimestampMicrosecond(Some(t), _) => {
            chrono::DateTime::from_timestamp_micros(*t)?.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        }
        ScalarValue::TimestampMillisecond(Some(t), _) => {
            chrono::DateTime::from_timestamp_millis(*t)?.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        }
        ScalarValue::TimestampSecond(Some(t), _) => {
            chrono::DateTime::from_timestamp(*t, 0)?.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        }
        ScalarValue::TimestampNanosecond(Some(t), _) => {
            chrono::DateTime::from_timestamp_nanos(*t).to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
        }
        _ => return None,
    })
}

/// The tables of one schema of a share.
#[derive(Debug)]
struct ShareSchema {
    client: Client,
    share: String,
    schema: String,
    tables: Vec<String>,
}

#[async_trait]
impl SchemaProvider for ShareSchema {
    fn table_names(&self) -> Vec<String> {
        self.tables.clone()
    }

    async fn table(&self, name: &str) -> datafusion::error::Result<Option<Arc<dyn TableProvider>>> {
        let Some(table) = self.tables.iter().find(|t| t.eq_ignore_ascii_case(name)) else { return Ok(None) };
        let name = TableName::new(&self.share, &self.schema, table);
        let t = SharedTableProvider::try_new(self.client.clone(), name).await.map_err(df_err)?;
        Ok(Some(Arc::new(t)))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.tables.iter().any(|t| t.eq_ignore_ascii_case(name))
    }
}

/// A share as a DataFusion catalog: its schemas and their tables.
#[derive(Debug)]
struct ShareCatalog {
    schemas: BTreeMap<String, Arc<ShareSchema>>,
}

impl CatalogProvider for ShareCatalog {
    fn schema_names(&self) -> Vec<String> {
        self.schemas.keys().cloned().collect()
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        self.schemas
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, s)| s.clone() as Arc<dyn SchemaProvider>)
    }
}

/// Registers every table the profile can see as `share.schema.table` in `ctx` (one DataFusion
/// catalog per share). Unquoted SQL names are lower-cased by DataFusion; quote mixed-case ones.
/// Returns the number of tables.
pub async fn register_profile(ctx: &SessionContext, client: &Client) -> Result<usize> {
    let tables = client.list_every_table().await?;
    let mut shares: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for t in &tables {
        shares.entry(t.share.clone()).or_default().entry(t.schema.clone()).or_default().push(t.name.clone());
    }
    for (share, schemas) in shares {
        let schemas = schemas
            .into_iter()
            .map(|(schema, tables)| {
                let provider =
                    ShareSchema { client: client.clone(), share: share.clone(), schema: schema.clone(), tables };
                (schema, Arc::new(provider))
            })
            .collect();
        ctx.register_catalog(&share, Arc::new(ShareCatalog { schemas }));
    }
    Ok(tables.len())
}
