//! `CREATE EXTERNAL TABLE` for a delivery's objects (Athena, Glue; the same layout DuckDB and
//! Spark read as a Hive-partitioned table). Partitions come from the prefix: each expression
//! becomes a partition column with partition projection, so no crawler or `MSCK REPAIR` is
//! needed: `partitionKeyFromQuery` as `injected`, `timestamp` as `date` with the pattern's Java
//! format. A `name=` right before the expression names the column (Hive style); otherwise
//! the name is derived (`datehour` / `dt` for time, the field for keys), as Firehose's own
//! Athena examples do for its default `yyyy/MM/dd/HH/` prefix.

use super::parquet::{SchemaError, Table};
use super::prefix::{Prefix, PrefixError, PrefixKind};
use crate::config::{DeliveryConfig, DeliveryFormat};
use std::fmt::Write;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DdlError {
    #[error("prefix: {0}")]
    Prefix(#[from] PrefixError),
    #[error("schema: {0}")]
    Schema(#[from] SchemaError),
    #[error("the prefix uses !{{firehose:random-string}}: such objects cannot be a partitioned table (drop it from the prefix)")]
    RandomString,
    #[error("`{name}` cannot be a {what} name (letters, digits and `_`)")]
    BadName { what: &'static str, name: String },
    #[error("partition column `{0}` has the name of a data column read from another field: rename the `{0}=` segment of the prefix")]
    Clash(String),
    #[error("two partitions are named `{0}`")]
    DuplicatePartition(String),
    #[error("`{0}` cannot be a table location: give s3://bucket/ or file:///path/")]
    Location(String),
}

/// The detection record's top-level fields, for JSON lines of detection streams.
const DETECTION_JSON: &[(&str, &str)] = &[
    ("schema", "string"),
    ("type", "string"),
    ("device", "string"),
    ("camera", "string"),
    ("timestamp", "string"),
    ("timestamp_ns", "bigint"),
    ("fragment_number", "string"),
    ("model", "string"),
    ("inference_ms", "double"),
    (
        "detections",
        "array<struct<label:string,class_id:int,score:double,box:struct<x:double,y:double,w:double,h:double>,zones:array<string>>>",
    ),
];

/// The table of `delivery` over the objects below `location` (`s3://bucket/` or
/// `file:///dir/`); `table` defaults to the delivery's name. JSON lines deliveries are read
/// as detection records when the source is the camera detections' default stream
/// (`detections`); see `create_table_for` to say it.
pub fn create_table(
    delivery: &DeliveryConfig,
    location: &str,
    table: Option<&str>,
) -> Result<String, DdlError> {
    create_table_for(delivery, location, table, delivery.source == "detections")
}

/// As `create_table`; `detection_source`: the source stream carries detection records (jsonl
/// deliveries then get their fields as columns, other streams one `line` column).
pub fn create_table_for(
    delivery: &DeliveryConfig,
    location: &str,
    table: Option<&str>,
    detection_source: bool,
) -> Result<String, DdlError> {
    if !(location.starts_with("s3://") || location.starts_with("file://"))
        || !location.ends_with('/')
    {
        return Err(DdlError::Location(location.to_string()));
    }
    let name = match table {
        Some(t) => {
            let ok = t.split('.').count() <= 2 && t.split('.').all(is_identifier);
            if !ok {
                return Err(DdlError::BadName {
                    what: "table",
                    name: t.to_string(),
                });
            }
            t.to_string()
        }
        None => delivery
            .name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect(),
    };
    let layout = Layout::of(delivery)?;

    // Data columns (name, Hive type, field of the record it comes from).
    let mut columns: Vec<(String, String, Option<String>)> = Vec::new();
    match delivery.format {
        DeliveryFormat::Parquet => {
            let t = Table::new(delivery.schema.as_ref())?;
            for c in t.columns() {
                // Athena (Hive metastore) column names: letters, digits and `_`.
                if !is_identifier(&c.name) {
                    return Err(DdlError::BadName {
                        what: "column",
                        name: c.name.clone(),
                    });
                }
                columns.push((
                    c.name.clone(),
                    c.kind.as_str().to_string(),
                    c.record_field(&t).map(str::to_string),
                ));
            }
        }
        DeliveryFormat::Jsonl if detection_source => {
            for &(n, ty) in DETECTION_JSON {
                columns.push((n.to_string(), ty.to_string(), Some(n.to_string())));
            }
        }
        DeliveryFormat::Jsonl => columns.push(("line".into(), "string".into(), None)),
    }
    // A partition key taken from the same field stands in for the data column (Athena refuses
    // a name that is both); anything else of the same name is a mistake in the prefix.
    for p in &layout.partitions {
        if let Some(i) = columns.iter().position(|c| c.0 == p.name) {
            match &p.kind {
                PartitionKind::Injected { field } if columns[i].2.as_deref() == Some(field) => {
                    columns.remove(i);
                }
                _ => return Err(DdlError::Clash(p.name.clone())),
            }
        }
    }

    let mut out = String::new();
    let _ = writeln!(out, "CREATE EXTERNAL TABLE IF NOT EXISTS `{name}` (");
    let list: Vec<String> = columns
        .iter()
        .map(|(n, ty, _)| format!("  `{n}` {ty}"))
        .collect();
    out.push_str(&list.join(",\n"));
    out.push_str("\n)\n");
    if !layout.partitions.is_empty() {
        let list: Vec<String> = layout
            .partitions
            .iter()
            .map(|p| format!("  `{}` string", p.name))
            .collect();
        let _ = writeln!(out, "PARTITIONED BY (\n{}\n)", list.join(",\n"));
    }
    match delivery.format {
        DeliveryFormat::Parquet => out.push_str("STORED AS PARQUET\n"),
        DeliveryFormat::Jsonl if detection_source => out.push_str(
            "ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe'\nSTORED AS TEXTFILE\n",
        ),
        // One column per line: the default field delimiter (\x01) never occurs unescaped in JSON.
        DeliveryFormat::Jsonl => out.push_str("STORED AS TEXTFILE\n"),
    }
    let _ = writeln!(out, "LOCATION '{location}{}'", layout.location);
    let mut props: Vec<(String, String)> = vec![("projection.enabled".into(), "true".into())];
    for p in &layout.partitions {
        let key = |k: &str| format!("projection.{}.{k}", p.name);
        match &p.kind {
            PartitionKind::Injected { .. } => props.push((key("type"), "injected".into())),
            PartitionKind::Date { format, unit } => {
                props.push((key("type"), "date".into()));
                props.push((key("format"), format.clone()));
                props.push((key("range"), "NOW-1YEARS,NOW".into()));
                props.push((key("interval"), "1".into()));
                props.push((key("interval.unit"), unit.to_string()));
            }
        }
    }
    props.push((
        "storage.location.template".into(),
        format!("{location}{}", layout.template),
    ));
    let list: Vec<String> = props
        .iter()
        .map(|(k, v)| format!("  '{k}' = '{}'", v.replace('\'', "''")))
        .collect();
    let _ = writeln!(out, "TBLPROPERTIES (\n{}\n);", list.join(",\n"));
    Ok(out)
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[derive(Debug, PartialEq)]
enum PartitionKind {
    Injected { field: String },
    Date { format: String, unit: &'static str },
}

#[derive(Debug, PartialEq)]
struct Partition {
    name: String,
    kind: PartitionKind,
}

/// The prefix seen as a table: the fixed part (LOCATION), partitions and the key template.
#[derive(Debug, PartialEq)]
struct Layout {
    location: String,
    template: String,
    partitions: Vec<Partition>,
}

impl Layout {
    fn of(delivery: &DeliveryConfig) -> Result<Layout, DdlError> {
        // Validated by the real parser first, then read as text with its defaults applied.
        Prefix::parse(delivery.prefix.as_deref(), &delivery.name, PrefixKind::Data)?;
        const DEFAULT_TIME: &str = "!{timestamp:yyyy/MM/dd/HH/}";
        let text = match delivery.prefix.as_deref() {
            None => format!("{}/{DEFAULT_TIME}", delivery.name),
            Some(t) if !t.contains("!{") => format!("{t}{DEFAULT_TIME}"),
            Some(t) => t.to_string(),
        };
        let first = text
            .find("!{")
            .expect("a data prefix always has an expression");
        let location = text[..first]
            .rfind('/')
            .map_or(String::new(), |i| text[..=i].to_string());
        let mut template = String::new();
        let mut partitions: Vec<Partition> = Vec::new();
        let mut rest = text.as_str();
        while let Some(start) = rest.find("!{") {
            template.push_str(&rest[..start]);
            let end = start + rest[start..].find('}').expect("checked by Prefix::parse");
            let (namespace, arg) = rest[start + 2..end]
                .split_once(':')
                .expect("checked by Prefix::parse");
            // `name=` right before the expression, at the start of a path segment.
            let segment = &template[template.rfind('/').map_or(0, |i| i + 1)..];
            let hive_name = segment.strip_suffix('=').filter(|n| !n.contains('='));
            let (name, kind, trailing) = match namespace.trim() {
                "timestamp" => {
                    let pattern = arg.trim();
                    let format = pattern.trim_end_matches('/');
                    let trailing = &pattern[format.len()..];
                    let unit = date_unit(format);
                    let name = match hive_name {
                        Some(n) => n.to_string(),
                        None if unit == "HOURS" || unit == "MINUTES" || unit == "SECONDS" => {
                            "datehour".to_string()
                        }
                        None => "dt".to_string(),
                    };
                    let kind = PartitionKind::Date {
                        format: format.to_string(),
                        unit,
                    };
                    (name, kind, trailing)
                }
                "partitionKeyFromQuery" => {
                    let field = arg.trim().trim_start_matches('.').to_string();
                    let name = hive_name.map_or_else(|| field.replace('.', "_"), str::to_string);
                    (name, PartitionKind::Injected { field }, "")
                }
                _ => return Err(DdlError::RandomString),
            };
            if !is_identifier(&name) {
                return Err(DdlError::BadName {
                    what: "partition column",
                    name,
                });
            }
            if partitions.iter().any(|p| p.name == name) {
                return Err(DdlError::DuplicatePartition(name));
            }
            let _ = write!(template, "${{{name}}}{trailing}");
            partitions.push(Partition { name, kind });
            rest = &rest[end + 1..];
        }
        template.push_str(rest);
        Ok(Layout {
            location,
            template,
            partitions,
        })
    }
}

/// The finest unit of a date pattern (Athena's `interval.unit`).
fn date_unit(pattern: &str) -> &'static str {
    // Letters inside '...' are literal text.
    let letters: String = pattern.split('\'').step_by(2).collect::<Vec<_>>().concat();
    [
        ('S', "MILLISECONDS"),
        ('s', "SECONDS"),
        ('m', "MINUTES"),
        ('H', "HOURS"),
        ('d', "DAYS"),
        ('M', "MONTHS"),
    ]
    .into_iter()
    .find(|(c, _)| letters.contains(*c))
    .map_or("YEARS", |(_, u)| u)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(toml_text: &str) -> DeliveryConfig {
        toml::from_str(toml_text).unwrap()
    }

    /// The issue's contract example.
    const DET_S3: &str = r#"
        name = "det-s3"
        source = "detections"
        format = "parquet"
        compression = "snappy"
        prefix = "detections/camera=!{partitionKeyFromQuery:camera}/dt=!{timestamp:yyyy-MM-dd}/"
        error_prefix = "errors/!{firehose:error-output-type}/!{timestamp:yyyy/MM/dd}/"
        [destination]
        kind = "s3"
        bucket = "edge-archive"
    "#;

    #[test]
    fn contract_example_parquet_with_hive_partitions() {
        let ddl = create_table(&delivery(DET_S3), "s3://edge-archive/", None).unwrap();
        assert_eq!(
            ddl,
            r#"CREATE EXTERNAL TABLE IF NOT EXISTS `det_s3` (
  `device` string,
  `timestamp` timestamp,
  `fragment_number` string,
  `model` string,
  `label` string,
  `class_id` int,
  `score` double,
  `box_x` double,
  `box_y` double,
  `box_w` double,
  `box_h` double,
  `inference_ms` double
)
PARTITIONED BY (
  `camera` string,
  `dt` string
)
STORED AS PARQUET
LOCATION 's3://edge-archive/detections/'
TBLPROPERTIES (
  'projection.enabled' = 'true',
  'projection.camera.type' = 'injected',
  'projection.dt.type' = 'date',
  'projection.dt.format' = 'yyyy-MM-dd',
  'projection.dt.range' = 'NOW-1YEARS,NOW',
  'projection.dt.interval' = '1',
  'projection.dt.interval.unit' = 'DAYS',
  'storage.location.template' = 's3://edge-archive/detections/camera=${camera}/dt=${dt}/'
);
"#
        );
    }

    #[test]
    fn default_prefix_is_one_date_partition_over_the_hour_path() {
        let d = delivery("name = \"det\"\nsource = \"detections\"\ncompression = \"gzip\"");
        let ddl = create_table(&d, "file:///var/lib/vidgest/outbox/", Some("edge.det")).unwrap();
        assert_eq!(
            ddl,
            r#"CREATE EXTERNAL TABLE IF NOT EXISTS `edge.det` (
  `schema` string,
  `type` string,
  `device` string,
  `camera` string,
  `timestamp` string,
  `timestamp_ns` bigint,
  `fragment_number` string,
  `model` string,
  `inference_ms` double,
  `detections` array<struct<label:string,class_id:int,score:double,box:struct<x:double,y:double,w:double,h:double>,zones:array<string>>>
)
PARTITIONED BY (
  `datehour` string
)
ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe'
STORED AS TEXTFILE
LOCATION 'file:///var/lib/vidgest/outbox/det/'
TBLPROPERTIES (
  'projection.enabled' = 'true',
  'projection.datehour.type' = 'date',
  'projection.datehour.format' = 'yyyy/MM/dd/HH',
  'projection.datehour.range' = 'NOW-1YEARS,NOW',
  'projection.datehour.interval' = '1',
  'projection.datehour.interval.unit' = 'HOURS',
  'storage.location.template' = 'file:///var/lib/vidgest/outbox/det/${datehour}/'
);
"#
        );
    }

    #[test]
    fn other_streams_declared_schemas_and_unnamed_partitions() {
        // JSON lines of another stream: one `line` column; a literal prefix gets the hour path.
        let d = delivery("name = \"m\"\nsource = \"metrics\"\nprefix = \"archive/m/\"");
        let ddl = create_table(&d, "s3://b/", None).unwrap();
        assert!(ddl.contains("(\n  `line` string\n)\nPARTITIONED BY (\n  `datehour` string\n)\nSTORED AS TEXTFILE\nLOCATION 's3://b/archive/m/'"), "{ddl}");
        assert!(ddl.contains("'storage.location.template' = 's3://b/archive/m/${datehour}/'"));

        // Declared columns; an unnamed key partition takes the field's name; months.
        let d = delivery(
            r#"
            name = "env"
            source = "sensors"
            format = "parquet"
            prefix = "env/!{partitionKeyFromQuery:meta.site}/!{timestamp:yyyy-MM}/"
            [schema]
            [[schema.column]]
            name = "site"
            type = "int"
            path = "meta.site"
            [[schema.column]]
            name = "at"
            type = "timestamp"
            "#,
        );
        let ddl = create_table(&d, "s3://b/", None).unwrap();
        assert!(ddl.contains("  `site` int,\n  `at` timestamp\n)\nPARTITIONED BY (\n  `meta_site` string,\n  `dt` string\n)"), "{ddl}");
        assert!(ddl.contains("'projection.dt.interval.unit' = 'MONTHS'"));
        assert!(ddl.contains("'storage.location.template' = 's3://b/env/${meta_site}/${dt}/'"));
    }

    #[test]
    fn unusable_layouts_are_refused() {
        let with_prefix = |p: &str| {
            let d = delivery(&format!(
                "name = \"d\"\nsource = \"detections\"\nformat = \"parquet\"\nprefix = \"{p}\""
            ));
            create_table(&d, "s3://b/", None).unwrap_err()
        };
        assert_eq!(
            with_prefix("x/!{firehose:random-string}/"),
            DdlError::RandomString
        );
        // `label` comes from the objects, not from a record field of that name.
        assert_eq!(
            with_prefix("label=!{partitionKeyFromQuery:label}/"),
            DdlError::Clash("label".into())
        );
        assert_eq!(
            with_prefix("camera=!{partitionKeyFromQuery:device}/"),
            DdlError::Clash("camera".into())
        );
        assert_eq!(
            with_prefix("a=!{timestamp:yyyy}/a=!{timestamp:MM}/"),
            DdlError::DuplicatePartition("a".into())
        );
        assert!(matches!(
            with_prefix("a-b=!{timestamp:yyyy}/"),
            DdlError::BadName { .. }
        ));
        assert!(matches!(with_prefix("!{nope}/"), DdlError::Prefix(_)));
        let d = delivery(
            "name = \"s\"\nsource = \"s\"\nformat = \"parquet\"\n[schema]\n[[schema.column]]\nname = \"a b\"\ntype = \"int\"",
        );
        assert_eq!(
            create_table(&d, "s3://b/", None),
            Err(DdlError::BadName {
                what: "column",
                name: "a b".into()
            })
        );
        let d = delivery(DET_S3);
        assert!(matches!(
            create_table(&d, "s3://b/", Some("x;drop")),
            Err(DdlError::BadName { what: "table", .. })
        ));
        assert!(matches!(
            create_table(&d, "/data/", None),
            Err(DdlError::Location(_))
        ));
    }

    #[test]
    fn date_units_follow_the_finest_letter() {
        assert_eq!(date_unit("yyyy"), "YEARS");
        assert_eq!(date_unit("yyyy-MM"), "MONTHS");
        assert_eq!(date_unit("yyyy/MM/dd"), "DAYS");
        assert_eq!(date_unit("yyyy'd'MM"), "MONTHS");
        assert_eq!(date_unit("HH-mm"), "MINUTES");
    }
}
