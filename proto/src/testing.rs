//! A structure-aware input for fuzzing decoders (feature `testing`): turns any
//! bytes into a well-formed protobuf wire message whose fields have arbitrary
//! numbers, wire types and values (strings of any content, nested messages,
//! extreme varints such as `i64::MAX` seconds or negative enum values), so a
//! fuzzer's bytes reach the conversions behind the protobuf decoder instead of
//! stopping at it.

use prost::encoding::{WireType, encode_key, encode_varint};

/// Varints worth trying more often than chance would: boundaries of the
/// integer types, 9999-12-31T23:59:59Z and one second past it, negatives.
const INTERESTING: [u64; 12] = [
    0,
    1,
    2,
    u64::MAX,
    i64::MAX as u64,
    i64::MIN as u64,
    i32::MAX as u64,
    (-1_i64) as u64,
    253_402_300_799,
    253_402_300_800,
    1_000_000_000,
    86_400,
];

/// A well-formed message built from `input` (every input gives one).
pub fn wire_message(input: &[u8]) -> Vec<u8> {
    let mut bytes = input.iter().copied();
    let mut out = Vec::new();
    build(&mut bytes, &mut out, 0);
    out
}

fn build(bytes: &mut impl Iterator<Item = u8>, out: &mut Vec<u8>, depth: u8) {
    for _ in 0..24 {
        let Some(b) = bytes.next() else { return };
        let field = u32::from(b % 12) + 1;
        match (b / 12) % 6 {
            0 => {
                encode_key(field, WireType::Varint, out);
                let pick = bytes.next().unwrap_or(0);
                let value = if pick < 128 {
                    INTERESTING[usize::from(pick) % INTERESTING.len()]
                } else {
                    u64::from_le_bytes(std::array::from_fn(|_| bytes.next().unwrap_or(0)))
                };
                encode_varint(value, out);
            }
            1 | 2 => {
                // A string or bytes field: any content, often valid UTF-8.
                let len = usize::from(bytes.next().unwrap_or(0) % 40);
                let raw: Vec<u8> = bytes.by_ref().take(len).collect();
                let value = if b.is_multiple_of(2) {
                    String::from_utf8_lossy(&raw).into_owned().into_bytes()
                } else {
                    raw
                };
                encode_key(field, WireType::LengthDelimited, out);
                encode_varint(value.len() as u64, out);
                out.extend(value);
            }
            3 if depth < 3 => {
                let mut nested = Vec::new();
                build(bytes, &mut nested, depth + 1);
                encode_key(field, WireType::LengthDelimited, out);
                encode_varint(nested.len() as u64, out);
                out.extend(nested);
            }
            4 => {
                encode_key(field, WireType::SixtyFourBit, out);
                out.extend(std::array::from_fn::<u8, 8, _>(|_| {
                    bytes.next().unwrap_or(0)
                }));
            }
            _ => {
                encode_key(field, WireType::ThirtyTwoBit, out);
                out.extend(std::array::from_fn::<u8, 4, _>(|_| {
                    bytes.next().unwrap_or(0)
                }));
            }
        }
    }
}

use prost::Message as _;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FileDescriptorSet};

/// Every message type of the contract, by full name (`roaming.view.v1.X`).
fn messages() -> &'static std::collections::HashMap<String, DescriptorProto> {
    static MESSAGES: std::sync::OnceLock<std::collections::HashMap<String, DescriptorProto>> =
        std::sync::OnceLock::new();
    MESSAGES.get_or_init(|| {
        let set = FileDescriptorSet::decode(crate::FILE_DESCRIPTOR_SET).unwrap_or_default();
        let mut all = std::collections::HashMap::new();
        for file in set.file {
            let package = file.package.unwrap_or_default();
            for m in file.message_type {
                collect(&package, m, &mut all);
            }
        }
        all
    })
}

fn collect(
    scope: &str,
    m: DescriptorProto,
    all: &mut std::collections::HashMap<String, DescriptorProto>,
) {
    let name = format!("{scope}.{}", m.name());
    for nested in m.nested_type.clone() {
        collect(&name, nested, all);
    }
    all.insert(name, m);
}

/// A message of type `full_name` (e.g. `roaming.reservation.v1.ReservationReserved`)
/// that always decodes as that type, with every field's value taken from
/// `input`: strings of any content, extreme integers and timestamps, unknown
/// enum values, missing or repeated fields. `None` for an unknown type.
pub fn message_for(full_name: &str, input: &[u8]) -> Option<Vec<u8>> {
    messages().get(full_name)?;
    let mut bytes = input.iter().copied();
    let mut out = Vec::new();
    typed(full_name, &mut bytes, &mut out, 0);
    Some(out)
}

fn typed(full_name: &str, bytes: &mut impl Iterator<Item = u8>, out: &mut Vec<u8>, depth: u8) {
    let Some(m) = messages().get(full_name) else {
        return;
    };
    for field in &m.field {
        let present = bytes.next().unwrap_or(0);
        // Absent about a quarter of the time; repeated fields up to 3 times.
        if present.is_multiple_of(4) {
            continue;
        }
        let times = if field.label() == Label::Repeated {
            usize::from(present % 3) + 1
        } else {
            1
        };
        let number = u32::try_from(field.number()).unwrap_or(1);
        for _ in 0..times {
            match field.r#type() {
                Type::String | Type::Bytes => {
                    let len = usize::from(bytes.next().unwrap_or(0) % 48);
                    let raw: Vec<u8> = bytes.by_ref().take(len).collect();
                    let value = if field.r#type() == Type::String {
                        String::from_utf8_lossy(&raw).into_owned().into_bytes()
                    } else {
                        raw
                    };
                    encode_key(number, WireType::LengthDelimited, out);
                    encode_varint(value.len() as u64, out);
                    out.extend(value);
                }
                Type::Message if depth < 4 => {
                    let mut nested = Vec::new();
                    let name = field.type_name().trim_start_matches('.');
                    if name == "google.protobuf.Timestamp" {
                        timestamp(bytes, &mut nested);
                    } else {
                        typed(name, bytes, &mut nested, depth + 1);
                    }
                    encode_key(number, WireType::LengthDelimited, out);
                    encode_varint(nested.len() as u64, out);
                    out.extend(nested);
                }
                Type::Double | Type::Fixed64 | Type::Sfixed64 => {
                    encode_key(number, WireType::SixtyFourBit, out);
                    out.extend(std::array::from_fn::<u8, 8, _>(|_| {
                        bytes.next().unwrap_or(0)
                    }));
                }
                Type::Float | Type::Fixed32 | Type::Sfixed32 => {
                    encode_key(number, WireType::ThirtyTwoBit, out);
                    out.extend(std::array::from_fn::<u8, 4, _>(|_| {
                        bytes.next().unwrap_or(0)
                    }));
                }
                Type::Message | Type::Group => {}
                // Integers, booleans and enums (including unknown values).
                _ => {
                    encode_key(number, WireType::Varint, out);
                    encode_varint(varint(bytes, field.r#type() == Type::Bool), out);
                }
            }
        }
    }
}

fn varint(bytes: &mut impl Iterator<Item = u8>, boolean: bool) -> u64 {
    let pick = bytes.next().unwrap_or(0);
    if boolean {
        return u64::from(pick % 2);
    }
    match pick {
        0..=99 => INTERESTING[usize::from(pick) % INTERESTING.len()],
        100..=199 => u64::from(pick - 100),
        _ => u64::from_le_bytes(std::array::from_fn(|_| bytes.next().unwrap_or(0))),
    }
}

/// `seconds` and `nanos`, often extreme (year 9999 and beyond, negative,
/// nanos out of range).
fn timestamp(bytes: &mut impl Iterator<Item = u8>, out: &mut Vec<u8>) {
    encode_key(1, WireType::Varint, out);
    encode_varint(varint(bytes, false), out);
    if bytes.next().unwrap_or(0).is_multiple_of(2) {
        encode_key(2, WireType::Varint, out);
        encode_varint(varint(bytes, false), out);
    }
}
