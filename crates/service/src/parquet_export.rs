//! Parquet files of segment members, for analysts' tools (pandas, DuckDB, Spark): one row
//! group per million rows, plain encoding, no compression (the `parquet` crate is built
//! without codecs to keep the build small).

use std::sync::Arc;

use cardcrm_store::repo::analysis::MemberRecord;
use parquet::{
    data_type::{ByteArray, ByteArrayType, DoubleType, Int64Type},
    file::{properties::WriterProperties, writer::SerializedFileWriter},
    schema::parser::parse_message_type,
};

use crate::error::{ServiceError, ServiceResult};

/// Rows per row group.
const ROW_GROUP_ROWS: usize = 1_000_000;

const SCHEMA: &str = "message analysis_members {
    REQUIRED INT64 run_id;
    REQUIRED BYTE_ARRAY segment (UTF8);
    REQUIRED INT64 customer_id;
    OPTIONAL DOUBLE score;
}";

fn failed(error: parquet::errors::ParquetError) -> ServiceError {
    ServiceError::Config(format!("writing the Parquet export: {error}"))
}

/// The members as a Parquet file: columns run_id, segment, customer_id, score (null where
/// the segment has no score).
pub fn members(run_id: i64, members: &[MemberRecord]) -> ServiceResult<Vec<u8>> {
    let schema = Arc::new(parse_message_type(SCHEMA).map_err(failed)?);
    let properties = Arc::new(WriterProperties::builder().set_created_by("cardcrm".into()).build());
    let mut writer = SerializedFileWriter::new(Vec::new(), schema, properties).map_err(failed)?;
    for chunk in members.chunks(ROW_GROUP_ROWS) {
        let mut group = writer.next_row_group().map_err(failed)?;
        let mut column = 0;
        while let Some(mut writer) = group.next_column().map_err(failed)? {
            match column {
                0 => {
                    let values = vec![run_id; chunk.len()];
                    writer.typed::<Int64Type>().write_batch(&values, None, None).map_err(failed)?;
                }
                1 => {
                    let values: Vec<ByteArray> =
                        chunk.iter().map(|member| ByteArray::from(member.segment.as_str())).collect();
                    writer.typed::<ByteArrayType>().write_batch(&values, None, None).map_err(failed)?;
                }
                2 => {
                    let values: Vec<i64> = chunk.iter().map(|member| member.customer_id).collect();
                    writer.typed::<Int64Type>().write_batch(&values, None, None).map_err(failed)?;
                }
                _ => {
                    let values: Vec<f64> = chunk.iter().filter_map(|member| member.score).collect();
                    let defined: Vec<i16> =
                        chunk.iter().map(|member| i16::from(member.score.is_some())).collect();
                    writer
                        .typed::<DoubleType>()
                        .write_batch(&values, Some(&defined), None)
                        .map_err(failed)?;
                }
            }
            writer.close().map_err(failed)?;
            column += 1;
        }
        group.close().map_err(failed)?;
    }
    writer.into_inner().map_err(failed)
}

#[cfg(test)]
mod tests {
    use parquet::{
        file::reader::{FileReader, SerializedFileReader},
        record::Field,
    };

    use super::*;

    #[test]
    fn a_parquet_reader_reads_back_every_row() {
        let rows: Vec<MemberRecord> = (0..2_500)
            .map(|index| MemberRecord {
                segment: if index % 3 == 0 { "champions".into() } else { "at_risk".into() },
                customer_id: 1_000 + index,
                score: (index % 2 == 0).then_some(index as f64 / 10.0),
            })
            .collect();
        let bytes = members(7, &rows).unwrap();
        assert_eq!(&bytes[..4], b"PAR1");
        let path = std::env::temp_dir().join(format!("cardcrm-parquet-{}.parquet", std::process::id()));
        std::fs::write(&path, &bytes).unwrap();
        let reader = SerializedFileReader::try_from(path.as_path()).unwrap();
        assert_eq!(reader.metadata().file_metadata().num_rows(), 2_500);
        let read: Vec<(i64, String, i64, Option<f64>)> = reader
            .get_row_iter(None)
            .unwrap()
            .map(|row| {
                let fields: Vec<Field> =
                    row.unwrap().get_column_iter().map(|(_, field)| field.clone()).collect();
                let number = |field: &Field| match field {
                    Field::Long(value) => *value,
                    other => panic!("{other:?}"),
                };
                let text = match &fields[1] {
                    Field::Str(text) => text.clone(),
                    other => panic!("{other:?}"),
                };
                let score = match &fields[3] {
                    Field::Double(value) => Some(*value),
                    Field::Null => None,
                    other => panic!("{other:?}"),
                };
                (number(&fields[0]), text, number(&fields[2]), score)
            })
            .collect();
        std::fs::remove_file(&path).unwrap();
        let expected: Vec<(i64, String, i64, Option<f64>)> =
            rows.iter().map(|row| (7, row.segment.clone(), row.customer_id, row.score)).collect();
        assert_eq!(read, expected);
    }
}
