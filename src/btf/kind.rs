//! BTF type kinds and the size of the data each one trails behind its 12-byte header.

use std::fmt;

/// Size of the file header fields the reader knows (`struct btf_header`).
pub(crate) const HEADER_LEN: usize = 24;

/// The kind of a BTF type entry (bits 24-28 of its `info` word).
///
/// Knowing every kind matters even for a reader that only looks up functions: entries are
/// variable-length and not indexed, so one kind of unknown size stops the whole walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Kind {
    Int,
    Ptr,
    Array,
    Struct,
    Union,
    Enum,
    Fwd,
    Typedef,
    Volatile,
    Const,
    Restrict,
    Func,
    FuncProto,
    Var,
    Datasec,
    Float,
    DeclTag,
    TypeTag,
    Enum64,
}

impl Kind {
    /// Highest kind number known (BTF_KIND_ENUM64).
    pub(crate) const MAX_RAW: u8 = 19;

    /// Maps the raw kind number; 0 (BTF_KIND_UNKN) is not a valid entry in the type section.
    pub fn from_raw(raw: u8) -> Option<Kind> {
        Some(match raw {
            1 => Kind::Int,
            2 => Kind::Ptr,
            3 => Kind::Array,
            4 => Kind::Struct,
            5 => Kind::Union,
            6 => Kind::Enum,
            7 => Kind::Fwd,
            8 => Kind::Typedef,
            9 => Kind::Volatile,
            10 => Kind::Const,
            11 => Kind::Restrict,
            12 => Kind::Func,
            13 => Kind::FuncProto,
            14 => Kind::Var,
            15 => Kind::Datasec,
            16 => Kind::Float,
            17 => Kind::DeclTag,
            18 => Kind::TypeTag,
            19 => Kind::Enum64,
            _ => return None,
        })
    }

    /// The kind number as stored in BTF.
    pub fn raw(self) -> u8 {
        match self {
            Kind::Int => 1,
            Kind::Ptr => 2,
            Kind::Array => 3,
            Kind::Struct => 4,
            Kind::Union => 5,
            Kind::Enum => 6,
            Kind::Fwd => 7,
            Kind::Typedef => 8,
            Kind::Volatile => 9,
            Kind::Const => 10,
            Kind::Restrict => 11,
            Kind::Func => 12,
            Kind::FuncProto => 13,
            Kind::Var => 14,
            Kind::Datasec => 15,
            Kind::Float => 16,
            Kind::DeclTag => 17,
            Kind::TypeTag => 18,
            Kind::Enum64 => 19,
        }
    }

    /// The name bpftool prints, so messages and test output line up with `bpftool btf dump`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Int => "INT",
            Kind::Ptr => "PTR",
            Kind::Array => "ARRAY",
            Kind::Struct => "STRUCT",
            Kind::Union => "UNION",
            Kind::Enum => "ENUM",
            Kind::Fwd => "FWD",
            Kind::Typedef => "TYPEDEF",
            Kind::Volatile => "VOLATILE",
            Kind::Const => "CONST",
            Kind::Restrict => "RESTRICT",
            Kind::Func => "FUNC",
            Kind::FuncProto => "FUNC_PROTO",
            Kind::Var => "VAR",
            Kind::Datasec => "DATASEC",
            Kind::Float => "FLOAT",
            Kind::DeclTag => "DECL_TAG",
            Kind::TypeTag => "TYPE_TAG",
            Kind::Enum64 => "ENUM64",
        }
    }

    /// Size of one record of the trailing data, and whether there are `vlen` of them (else
    /// exactly one, or none when the size is 0).
    pub(crate) fn trailing(self) -> (usize, bool) {
        match self {
            Kind::Int | Kind::Var | Kind::DeclTag => (4, false),
            Kind::Array => (12, false),
            Kind::Struct | Kind::Union | Kind::Datasec | Kind::Enum64 => (12, true),
            Kind::Enum | Kind::FuncProto => (8, true),
            Kind::Ptr
            | Kind::Fwd
            | Kind::Typedef
            | Kind::Volatile
            | Kind::Const
            | Kind::Restrict
            | Kind::Func
            | Kind::Float
            | Kind::TypeTag => (0, false),
        }
    }

    /// Whether each trailing record starts with a name offset that must be validated.
    pub(crate) fn records_have_names(self) -> bool {
        matches!(self, Kind::Struct | Kind::Union | Kind::Enum | Kind::Enum64 | Kind::FuncProto)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
