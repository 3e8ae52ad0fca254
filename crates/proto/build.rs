//! Compiles `proto/` with protox (pure Rust, no system `protoc`) into tonic
//! client and server stubs, writes the encoded descriptor set that
//! reflection serves and the gateway reads access rules from, and generates
//! the Rust form of the error-reason catalogue
//! (`tenancy.errors.v1.Reason`, with each reason's gRPC code).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use prost_reflect::{DescriptorPool, EnumDescriptor, Value};

/// The catalogue's proto file, package and enum.
const ERRORS_FILE: &str = "tenancy/errors/v1/reason.proto";
const REASON_ENUM: &str = "tenancy.errors.v1.Reason";
const CODE_OPTION: &str = "tenancy.errors.v1.code";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let proto_root = manifest_dir.join("../../proto");
    println!("cargo:rerun-if-changed={}", proto_root.display());

    let mut files = Vec::new();
    collect_protos(&proto_root.join("tenancy"), &mut files)?;
    files.sort();

    let mut compiler = protox::Compiler::new([&proto_root])?;
    compiler.include_imports(true).include_source_info(true);
    compiler.open_files(&files)?;

    // The encoded set keeps custom options (our `tenancy.auth.v1.access`
    // rules) and comments; prost_types' decoded form would drop extensions.
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("tenancy_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;

    // The catalogue becomes a Rust enum of our own (below), with its codes:
    // prost's would have an UNSPECIFIED variant and no codes.
    let mut fds = compiler.file_descriptor_set();
    fds.file.retain(|f| f.name() != ERRORS_FILE);
    tonic_prost_build::configure()
        // Methods a service does not implement yet answer UNIMPLEMENTED.
        .generate_default_stubs(true)
        .compile_fds(fds)?;

    let reasons = reason_enum(&compiler.descriptor_pool())?;
    std::fs::write(out_dir.join("tenancy_reasons.rs"), reasons)?;
    Ok(())
}

fn collect_protos(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_protos(&path, out)?;
        } else if path.extension().is_some_and(|ext| ext == "proto") {
            out.push(path);
        }
    }
    Ok(())
}

/// The leading comment of the element at `path` in the enum's file.
fn comment(enum_: &EnumDescriptor, path: &[i32]) -> Option<String> {
    let file = enum_.parent_file();
    let info = file.file_descriptor_proto().source_code_info.as_ref()?;
    let location = info.location.iter().find(|l| l.path == path)?;
    let text = location.leading_comments().trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// `TOKEN_REVOKED` → `TokenRevoked`.
fn camel(name: &str) -> String {
    name.split('_')
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_string() + &chars.as_str().to_lowercase()
            })
        })
        .collect()
}

/// `GRPC_CODE_NOT_FOUND` → `NotFound` (tonic::Code's variant).
fn tonic_code(value: &str) -> Option<String> {
    value.strip_prefix("GRPC_CODE_").map(camel)
}

/// Rust source for `Reason`: one variant per catalogue value (without
/// REASON_UNSPECIFIED, which is never sent), documented with the value's
/// proto comment, with its wire name and gRPC code. Fails the build when a
/// value lacks a comment or a code.
fn reason_enum(pool: &DescriptorPool) -> Result<String, Box<dyn std::error::Error>> {
    let reason = pool
        .get_enum_by_name(REASON_ENUM)
        .ok_or("tenancy.errors.v1.Reason is missing")?;
    let code_option = pool
        .get_extension_by_name(CODE_OPTION)
        .ok_or("tenancy.errors.v1.code is missing")?;
    let code_enum = match code_option.kind() {
        prost_reflect::Kind::Enum(e) => e,
        _ => return Err("tenancy.errors.v1.code must be an enum".into()),
    };

    let mut variants = String::new();
    let mut names = String::new();
    let mut codes = String::new();
    let mut numbers = String::new();
    let mut parse = String::new();
    let mut all = String::new();
    for value in reason.values() {
        if value.number() == 0 {
            continue;
        }
        let name = value.name();
        let doc = comment(&reason, value.path())
            .ok_or_else(|| format!("Reason.{name} has no comment: say what it means"))?;
        let options = value.options();
        if !options.has_extension(&code_option) {
            return Err(format!("Reason.{name} has no (tenancy.errors.v1.code) option").into());
        }
        let code = match options.get_extension(&code_option).as_ref() {
            Value::EnumNumber(n) => *n,
            _ => return Err(format!("Reason.{name}: code is not a GrpcCode").into()),
        };
        let code = code_enum
            .get_value(code)
            .and_then(|c| tonic_code(c.name()))
            .filter(|c| c != "Unspecified")
            .ok_or_else(|| format!("Reason.{name}: code must not be UNSPECIFIED"))?;
        let variant = camel(name);
        for line in doc.lines() {
            writeln!(variants, "    #[doc = {:?}]", format!(" {}", line.trim()))?;
        }
        writeln!(variants, "    {variant},")?;
        writeln!(names, "            Self::{variant} => {name:?},")?;
        writeln!(codes, "            Self::{variant} => tonic::Code::{code},")?;
        writeln!(
            numbers,
            "            Self::{variant} => {},",
            value.number()
        )?;
        writeln!(parse, "            {name:?} => Some(Self::{variant}),")?;
        writeln!(all, "        Self::{variant},")?;
    }

    let enum_doc: String = comment(&reason, reason.path())
        .unwrap_or_default()
        .lines()
        .map(|line| format!("#[doc = {:?}]\n", format!(" {}", line.trim())))
        .collect();
    Ok(format!(
        r#"{enum_doc}///
/// Generated from `proto/{ERRORS_FILE}`: the variant names are the proto
/// value names in CamelCase, [`Reason::as_str`] is the wire string and
/// [`Reason::code`] the value's `(tenancy.errors.v1.code)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {{
{variants}}}

impl Reason {{
    /// Every reason, in the order of the proto file.
    pub const ALL: &'static [Reason] = &[
{all}    ];

    /// The `ErrorInfo.reason` string: the proto value's name.
    pub const fn as_str(self) -> &'static str {{
        match self {{
{names}        }}
    }}

    /// The gRPC status code every error with this reason has.
    pub const fn code(self) -> tonic::Code {{
        match self {{
{codes}        }}
    }}

    /// The proto enum number of the value.
    pub const fn number(self) -> i32 {{
        match self {{
{numbers}        }}
    }}

    /// The reason named `name` (an `ErrorInfo.reason`), if it is one of the
    /// catalogue.
    pub fn from_str_name(name: &str) -> Option<Self> {{
        match name {{
{parse}            _ => None,
        }}
    }}
}}

impl std::fmt::Display for Reason {{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {{
        f.write_str(self.as_str())
    }}
}}
"#
    ))
}
