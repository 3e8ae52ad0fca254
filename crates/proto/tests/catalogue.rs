//! The error-reason catalogue (`proto/tenancy/errors/v1/reason.proto`) as
//! reflection serves it agrees with the Rust `Reason` every server uses, and
//! every reason a proto comment promises exists, with the code it is
//! promised with.

use std::collections::{BTreeSet, HashMap};

use prost_reflect::{DescriptorPool, Value};
use tenancy_proto::errors::Reason;

fn pool() -> DescriptorPool {
    DescriptorPool::decode(tenancy_proto::FILE_DESCRIPTOR_SET).expect("descriptor set")
}

/// The gRPC code names (`NOT_FOUND`, ...) by number, from the catalogue's
/// `GrpcCode` enum.
fn code_names(pool: &DescriptorPool) -> HashMap<i32, String> {
    pool.get_enum_by_name("tenancy.errors.v1.GrpcCode")
        .expect("GrpcCode")
        .values()
        .filter(|v| v.number() != 0)
        .map(|v| {
            let name = v.name().strip_prefix("GRPC_CODE_").expect("prefix");
            (v.number(), name.to_owned())
        })
        .collect()
}

#[test]
fn the_proto_catalogue_and_the_rust_reasons_agree() {
    let pool = pool();
    let reason = pool
        .get_enum_by_name("tenancy.errors.v1.Reason")
        .expect("Reason");
    let code = pool
        .get_extension_by_name("tenancy.errors.v1.code")
        .expect("code option");
    let file = reason.parent_file();
    let info = file
        .file_descriptor_proto()
        .source_code_info
        .clone()
        .expect("comments");
    let mut seen = BTreeSet::new();
    for value in reason.values().filter(|v| v.number() != 0) {
        let name = value.name();
        let rust = Reason::from_str_name(name).unwrap_or_else(|| panic!("{name} not in Rust"));
        assert_eq!(rust.as_str(), name);
        assert_eq!(rust.number(), value.number(), "{name}");
        let options = value.options();
        assert!(options.has_extension(&code), "{name} has no code");
        let Value::EnumNumber(number) = options.get_extension(&code).into_owned() else {
            panic!("{name}: code is not a GrpcCode");
        };
        assert_eq!(
            rust.code() as i32,
            number,
            "{name}: Rust and proto codes differ"
        );
        assert_ne!(rust.code(), tonic::Code::Ok, "{name}");
        let comment = info
            .location
            .iter()
            .find(|l| l.path == value.path())
            .map(|l| l.leading_comments().trim().to_owned())
            .unwrap_or_default();
        assert!(
            comment.len() > 10,
            "{name} needs a comment saying what it means"
        );
        assert!(
            name.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'),
            "{name} is not UPPER_SNAKE"
        );
        seen.insert(rust);
    }
    assert_eq!(
        seen.len(),
        Reason::ALL.len(),
        "a Rust reason is not in the proto"
    );
    assert_eq!(Reason::from_str_name("REASON_UNSPECIFIED"), None);
}

/// Every UPPER_SNAKE word of every comment of the Tenancy protos names
/// something that exists: a gRPC code, an enum value (in full or without
/// its enum's prefix) or a catalogue reason. A reason that comes after a
/// code in the same comment is promised with that code: it must be the
/// catalogue's. So a renamed or invented reason, or one documented with a
/// code it is never sent with, fails here.
#[test]
fn every_reason_a_proto_comment_names_is_in_the_catalogue_with_that_code() {
    let pool = pool();
    let codes = code_names(&pool);
    let code_of_name: HashMap<&str, i32> = codes.iter().map(|(n, s)| (s.as_str(), *n)).collect();
    // Names a comment may mention besides reasons and codes: enum values
    // (in full or short) and field names in capitals (`UPDATE_TIME`).
    let mut enum_values = BTreeSet::new();
    for m in pool.all_messages() {
        for f in m.fields() {
            enum_values.insert(f.name().to_ascii_uppercase());
        }
    }
    for e in pool.all_enums() {
        let prefix = upper_snake(e.name()) + "_";
        for v in e.values() {
            enum_values.insert(v.name().to_owned());
            if let Some(short) = v.name().strip_prefix(&prefix) {
                enum_values.insert(short.to_owned());
            }
        }
    }
    let mut problems = Vec::new();
    for file in pool.files() {
        if !file.name().starts_with("tenancy/") || file.name().starts_with("tenancy/errors/") {
            continue;
        }
        let Some(info) = &file.file_descriptor_proto().source_code_info else {
            continue;
        };
        for location in &info.location {
            let text = [location.leading_comments(), location.trailing_comments()].join("\n");
            let mut current_code: Option<i32> = None;
            for word in words(&text) {
                if let Some(&code) = code_of_name.get(word.as_str()) {
                    current_code = Some(code);
                    continue;
                }
                if !word.contains('_') {
                    continue;
                }
                if let Some(reason) = Reason::from_str_name(&word) {
                    if let Some(code) = current_code
                        && reason.code() as i32 != code
                    {
                        problems.push(format!(
                            "{}: {word} is documented as {} but is {:?}",
                            file.name(),
                            codes[&code],
                            reason.code()
                        ));
                    }
                    continue;
                }
                if !enum_values.contains(&word) {
                    problems.push(format!(
                        "{}: {word} is neither a reason of tenancy.errors.v1.Reason, a gRPC code nor an enum value",
                        file.name()
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// `TicketStatus` → `TICKET_STATUS`.
fn upper_snake(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// The UPPER_SNAKE words of `text` (`NOT_FOUND`, `UNAUTHENTICATED`).
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .map(|w| w.trim_matches('_'))
        .filter(|w| {
            w.len() > 1
                && w.chars().next().is_some_and(|c| c.is_ascii_uppercase())
                && w.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        })
        .map(str::to_owned)
        .collect()
}
