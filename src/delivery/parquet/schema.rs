//! What a Parquet delivery's rows are: the built-in `detections` table or declared columns with
//! JSON paths, and the conversion of one record into rows (all or nothing).

use super::columns::{Cell, ColumnBuf, Row};
use crate::config::{ColumnType, SchemaConfig};
use crate::delivery::body::ConvertError;
use crate::records::{RecordKind, DETECTION_SCHEMA};
use serde::Deserialize;
use serde_json::Value;
use std::borrow::Cow;

/// Firehose's error code for a record that does not fit the schema.
pub const MALFORMED: &str = "DataFormatConversion.MalformedData";

/// A schema that cannot make a table (config checks report most of these earlier).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    #[error("unknown built-in schema `{0}` (built in: detections)")]
    UnknownBuiltin(String),
    #[error("a declared schema needs at least one column")]
    NoColumns,
    #[error("column `{0}` is empty or declared twice")]
    BadColumnName(String),
    #[error("`{path}` ({what}) is not a dotted JSON path like `a.b` or `$.a.b`")]
    BadPath { what: String, path: String },
}

/// One column of the table, in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub kind: ColumnType,
    /// Nullable (OPTIONAL in Parquet); required columns reject records without a value.
    pub optional: bool,
    path: JsonPath,
}

impl Column {
    /// The top-level record field this column is read from, if it is one (a partition key
    /// from the same field may stand in for it in a table definition).
    pub fn record_field(&self, table: &Table) -> Option<&str> {
        let from_record = match &table.source {
            Source::Detections => matches!(
                self.name.as_str(),
                "device" | "camera" | "fragment_number" | "model"
            ),
            Source::Declared { rows } => self.path.from_root || rows.is_none(),
        };
        (from_record && self.path.keys.len() == 1).then(|| self.path.keys[0].as_str())
    }
}

/// A dotted path; `$.` makes it start at the record even inside `rows`.
#[derive(Debug, Clone, PartialEq)]
struct JsonPath {
    text: String,
    from_root: bool,
    keys: Vec<String>,
}

impl JsonPath {
    fn parse(text: &str, what: &str) -> Result<JsonPath, SchemaError> {
        let (from_root, rest) = match text.strip_prefix("$.") {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let keys: Vec<String> = rest.split('.').map(str::to_string).collect();
        if keys.iter().any(String::is_empty) {
            return Err(SchemaError::BadPath {
                what: what.to_string(),
                path: text.to_string(),
            });
        }
        Ok(JsonPath {
            text: text.to_string(),
            from_root,
            keys,
        })
    }

    /// The value at the path (JSON null counts as absent); numeric keys index arrays.
    fn get<'v>(&self, root: &'v Value, element: &'v Value) -> Option<&'v Value> {
        let mut v = if self.from_root { root } else { element };
        for k in &self.keys {
            v = match v {
                Value::Object(m) => m.get(k)?,
                Value::Array(a) => a.get(k.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        (!v.is_null()).then_some(v)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Source {
    /// `vidgest.detection/1` records, one row per detected object.
    Detections,
    /// Declared columns; `rows`: one row per element of that array.
    Declared { rows: Option<JsonPath> },
}

/// The rows a delivery writes: columns and how records become rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    source: Source,
    columns: Vec<Column>,
}

/// The built-in detections table, in file order.
const DETECTION_COLUMNS: &[(&str, ColumnType, bool)] = &[
    ("device", ColumnType::String, false),
    ("camera", ColumnType::String, false),
    ("timestamp", ColumnType::Timestamp, false),
    ("fragment_number", ColumnType::String, false),
    ("model", ColumnType::String, false),
    ("label", ColumnType::String, false),
    ("class_id", ColumnType::Int, false),
    ("score", ColumnType::Double, false),
    ("box_x", ColumnType::Double, false),
    ("box_y", ColumnType::Double, false),
    ("box_w", ColumnType::Double, false),
    ("box_h", ColumnType::Double, false),
    ("inference_ms", ColumnType::Double, true),
];

impl Table {
    /// The table of a delivery's `schema` (None: the built-in detections).
    pub fn new(schema: Option<&SchemaConfig>) -> Result<Table, SchemaError> {
        match schema {
            None => Ok(Table::detections()),
            Some(SchemaConfig::Builtin(name)) if name == "detections" => Ok(Table::detections()),
            Some(SchemaConfig::Builtin(name)) => Err(SchemaError::UnknownBuiltin(name.clone())),
            Some(SchemaConfig::Declared(d)) => {
                if d.columns.is_empty() {
                    return Err(SchemaError::NoColumns);
                }
                let mut seen = std::collections::HashSet::new();
                let mut columns = Vec::with_capacity(d.columns.len());
                for c in &d.columns {
                    if c.name.is_empty() || !seen.insert(c.name.as_str()) {
                        return Err(SchemaError::BadColumnName(c.name.clone()));
                    }
                    let path = c.path.as_deref().unwrap_or(&c.name);
                    columns.push(Column {
                        name: c.name.clone(),
                        kind: c.kind,
                        optional: c.optional,
                        path: JsonPath::parse(path, &format!("column {}", c.name))?,
                    });
                }
                let rows = match &d.rows {
                    Some(r) => Some(JsonPath::parse(r, "rows")?),
                    None => None,
                };
                Ok(Table {
                    source: Source::Declared { rows },
                    columns,
                })
            }
        }
    }

    fn detections() -> Table {
        Table {
            source: Source::Detections,
            columns: DETECTION_COLUMNS
                .iter()
                .map(|&(name, kind, optional)| Column {
                    name: name.to_string(),
                    kind,
                    optional,
                    path: JsonPath {
                        text: name.to_string(),
                        from_root: false,
                        keys: vec![name.to_string()],
                    },
                })
                .collect(),
        }
    }

    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// Whether this is the built-in detections table.
    pub fn is_detections(&self) -> bool {
        self.source == Source::Detections
    }

    /// Converts one record (all of it, before anything is appended), or says why it cannot.
    pub(super) fn convert<'a>(&self, data: &'a [u8]) -> Result<Converted<'a>, ConvertError> {
        match &self.source {
            Source::Detections => parse_detection(data).map(Converted::Detection),
            Source::Declared { rows } => {
                let mut out = Vec::new();
                self.declared_rows(rows.as_ref(), data, &mut out)?;
                Ok(Converted::Rows(out))
            }
        }
    }

    fn declared_rows<'a>(
        &self,
        rows: Option<&JsonPath>,
        data: &[u8],
        out: &mut Vec<Row<'a>>,
    ) -> Result<(), ConvertError> {
        let root: Value = serde_json::from_slice(data)
            .map_err(|e| malformed(format!("the record is not JSON: {e}")))?;
        let elements: Vec<&Value> = match rows {
            None => vec![&root],
            Some(p) => match p.get(&root, &root) {
                Some(Value::Array(a)) => a.iter().collect(),
                Some(_) => {
                    return Err(malformed(format!("rows path `{}` is not an array", p.text)))
                }
                None => return Err(malformed(format!("rows path `{}` is missing", p.text))),
            },
        };
        for (i, element) in elements.into_iter().enumerate() {
            let mut row = Vec::with_capacity(self.columns.len());
            for c in &self.columns {
                let at = || match rows {
                    Some(p) => format!(" in element {i} of `{}`", p.text),
                    None => String::new(),
                };
                let cell = match c.path.get(&root, element) {
                    None if c.optional => Cell::Null,
                    None => {
                        return Err(malformed(format!(
                            "column `{}`: no value at path `{}`{}",
                            c.name,
                            c.path.text,
                            at()
                        )))
                    }
                    Some(v) => convert(v, c.kind).map_err(|why| {
                        malformed(format!(
                            "column `{}` ({}) at path `{}`{}: {why}",
                            c.name,
                            c.kind.as_str(),
                            c.path.text,
                            at()
                        ))
                    })?,
                };
                row.push(cell);
            }
            out.push(row);
        }
        Ok(())
    }
}

/// A converted record, ready to append.
pub(super) enum Converted<'a> {
    Detection(DetectionIn<'a>),
    Rows(Vec<Row<'a>>),
}

impl Converted<'_> {
    pub(super) fn rows(&self) -> usize {
        match self {
            Converted::Detection(d) => d.rows(),
            Converted::Rows(r) => r.len(),
        }
    }

    pub(super) fn append(&self, cols: &mut [ColumnBuf]) {
        match self {
            Converted::Detection(d) => d.append(cols),
            Converted::Rows(rows) => {
                for row in rows {
                    for (buf, cell) in cols.iter_mut().zip(row) {
                        buf.push(cell);
                    }
                }
            }
        }
    }
}

pub(super) fn malformed(message: String) -> ConvertError {
    ConvertError {
        code: MALFORMED,
        message,
    }
}

/// Strict but sensible: numbers stay numbers (an int must be a JSON integer in range, a
/// double may be any number), strings take any scalar as its JSON text, timestamps are RFC
/// 3339 strings or integer Unix milliseconds. Objects and arrays never convert.
fn convert<'a>(v: &Value, kind: ColumnType) -> Result<Cell<'a>, String> {
    let wrong = || format!("cannot convert {}", short(v));
    Ok(match kind {
        ColumnType::String => match v {
            Value::String(s) => Cell::Str(Cow::Owned(s.clone())),
            Value::Number(n) => Cell::Str(Cow::Owned(n.to_string())),
            Value::Bool(b) => Cell::Str(Cow::Owned(b.to_string())),
            _ => return Err(wrong()),
        },
        ColumnType::Boolean => Cell::Bool(v.as_bool().ok_or_else(wrong)?),
        ColumnType::Int => Cell::I32(
            v.as_i64()
                .and_then(|i| i32::try_from(i).ok())
                .ok_or_else(wrong)?,
        ),
        ColumnType::Bigint => Cell::I64(v.as_i64().ok_or_else(wrong)?),
        ColumnType::Float => Cell::F32(v.as_f64().ok_or_else(wrong)? as f32),
        ColumnType::Double => Cell::F64(v.as_f64().ok_or_else(wrong)?),
        ColumnType::Timestamp => Cell::I64(match v {
            Value::String(s) => {
                let t =
                    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                        .map_err(|e| format!("{}: not RFC 3339 ({e})", short(v)))?;
                (t.unix_timestamp_nanos().div_euclid(1_000_000)) as i64
            }
            Value::Number(n) => n.as_i64().ok_or_else(wrong)?,
            _ => return Err(wrong()),
        }),
    })
}

/// A value for an error message, cut short.
fn short(v: &Value) -> String {
    let mut s = v.to_string();
    if s.len() > 60 {
        let mut end = 57;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str("...");
    }
    s
}

#[derive(Deserialize)]
pub(super) struct DetectionIn<'a> {
    #[serde(borrow)]
    schema: Cow<'a, str>,
    #[serde(rename = "type")]
    kind: RecordKind,
    #[serde(borrow)]
    device: Cow<'a, str>,
    #[serde(borrow)]
    camera: Cow<'a, str>,
    timestamp_ns: i64,
    #[serde(borrow)]
    fragment_number: Cow<'a, str>,
    #[serde(borrow)]
    model: Cow<'a, str>,
    #[serde(default)]
    inference_ms: Option<f64>,
    #[serde(borrow)]
    detections: Vec<ObjectIn<'a>>,
}

#[derive(Deserialize)]
struct ObjectIn<'a> {
    #[serde(borrow)]
    label: Cow<'a, str>,
    class_id: i32,
    score: f64,
    #[serde(rename = "box")]
    bbox: BoxIn,
}

#[derive(Deserialize)]
struct BoxIn {
    x: f64,
    y: f64,
    w: f64,
    h: f64,
}

/// Typed straight from the bytes (strings borrowed): the hot path of detection deliveries.
pub(super) fn parse_detection(data: &[u8]) -> Result<DetectionIn<'_>, ConvertError> {
    // One UTF-8 check of the whole record is cheaper than one per string (from_slice).
    let text = std::str::from_utf8(data)
        .map_err(|e| malformed(format!("not a {DETECTION_SCHEMA} record: not UTF-8 ({e})")))?;
    let rec: DetectionIn = serde_json::from_str(text).map_err(|e| {
        // Name the schema when the record is some other kind (the likelier mistake).
        #[derive(Deserialize)]
        struct Id {
            schema: Option<String>,
        }
        match serde_json::from_slice::<Id>(data) {
            Ok(Id { schema: Some(s) }) if s != DETECTION_SCHEMA => {
                malformed(format!("not a {DETECTION_SCHEMA} record (schema `{s}`)"))
            }
            _ => malformed(format!("not a {DETECTION_SCHEMA} record: {e}")),
        }
    })?;
    if rec.schema != DETECTION_SCHEMA {
        return Err(malformed(format!(
            "not a {DETECTION_SCHEMA} record (schema `{}`)",
            rec.schema
        )));
    }
    Ok(rec)
}

impl DetectionIn<'_> {
    /// Rows it gives: one per object, none for a heartbeat.
    pub(super) fn rows(&self) -> usize {
        match self.kind {
            RecordKind::Heartbeat => 0,
            RecordKind::Detection => self.detections.len(),
        }
    }

    /// Appends its rows to the detections table's columns (in `DETECTION_COLUMNS` order).
    pub(super) fn append(&self, cols: &mut [ColumnBuf]) {
        if self.rows() == 0 {
            return;
        }
        let millis = self.timestamp_ns.div_euclid(1_000_000);
        let [device, camera, timestamp, fragment, model, label, class_id, score, x, y, w, h, inference] =
            cols
        else {
            unreachable!("the detections table has 13 columns")
        };
        for o in &self.detections {
            device.push_str(&self.device);
            camera.push_str(&self.camera);
            timestamp.push_i64(millis);
            fragment.push_str(&self.fragment_number);
            model.push_str(&self.model);
            label.push_str(&o.label);
            class_id.push_i32(o.class_id);
            score.push_f64(o.score);
            x.push_f64(o.bbox.x);
            y.push_f64(o.bbox.y);
            w.push_f64(o.bbox.w);
            h.push_f64(o.bbox.h);
            match self.inference_ms {
                Some(ms) => inference.push_f64(ms),
                None => inference.push(&Cell::Null),
            }
        }
    }
}
