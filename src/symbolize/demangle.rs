//! Demangling of symbol names: Rust (legacy and v0) through `rustc-demangle`, printed without the
//! hash, and C++ (Itanium ABI) through `cpp_demangle`, printed in full (with parameters). Names that
//! are not mangled, such as C functions or the plain `DW_AT_name` of a DWARF subprogram, come out
//! unchanged.

use std::fmt::Write;

use gimli::DwLang;

/// Appends the display form of `raw` to `out`: demangled when `demangle` is set and `raw` is a
/// mangled name of the given language (or of any known scheme when the language is unknown, as for
/// symbol-table names), and `raw` itself otherwise.
pub(crate) fn push_name(
    raw: &str,
    language: Option<DwLang>,
    demangle: bool,
    out: &mut Vec<String>,
) {
    let mut name = String::new();
    if !demangle || !write_demangled(raw, language, &mut name) {
        name.clear();
        name.push_str(raw);
    }
    out.push(name);
}

/// Writes the demangled form of `raw` into `out` (empty on entry); returns false when `raw` is not a mangled name.
fn write_demangled(raw: &str, language: Option<DwLang>, out: &mut String) -> bool {
    let is_cpp = matches!(
        language,
        Some(
            gimli::DW_LANG_C_plus_plus
                | gimli::DW_LANG_C_plus_plus_03
                | gimli::DW_LANG_C_plus_plus_11
                | gimli::DW_LANG_C_plus_plus_14
                | gimli::DW_LANG_C_plus_plus_17
                | gimli::DW_LANG_C_plus_plus_20
        )
    );
    let maybe_rust = language.is_none() || language == Some(gimli::DW_LANG_Rust);
    let maybe_cpp = language.is_none() || is_cpp;
    if !(raw.starts_with("_Z") || raw.starts_with("_R") || raw.starts_with("__Z")) {
        return false;
    }
    if maybe_rust {
        if let Ok(demangled) = rustc_demangle::try_demangle(raw) {
            // `{:#}` leaves out the hash (`::h0123456789abcdef` or the v0 crate disambiguator).
            return write!(out, "{demangled:#}").is_ok();
        }
    }
    if maybe_cpp && raw.starts_with("_Z") {
        if let Ok(symbol) = cpp_demangle::Symbol::new(raw.as_bytes()) {
            if let Ok(demangled) = symbol.demangle() {
                *out = demangled;
                return true;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(raw: &str, language: Option<DwLang>) -> String {
        let mut out = Vec::new();
        push_name(raw, language, true, &mut out);
        out.pop().unwrap()
    }

    #[test]
    fn rust_legacy_loses_its_hash() {
        assert_eq!(
            name("_ZN4core3ptr13drop_in_place17h1d6ad6fd1b9c0a6fE", None),
            "core::ptr::drop_in_place"
        );
        assert_eq!(
            name(
                "_ZN4core3ptr13drop_in_place17h1d6ad6fd1b9c0a6fE",
                Some(gimli::DW_LANG_Rust)
            ),
            "core::ptr::drop_in_place"
        );
    }

    #[test]
    fn rust_v0_loses_its_disambiguators() {
        assert_eq!(name("_RNvCs1234_7mycrate3foo", None), "mycrate::foo");
    }

    #[test]
    fn cpp_keeps_its_parameters() {
        assert_eq!(name("_ZN3foo3barEi", None), "foo::bar(int)");
        assert_eq!(
            name("_ZN3foo3barEi", Some(gimli::DW_LANG_C_plus_plus_11)),
            "foo::bar(int)"
        );
    }

    #[test]
    fn plain_names_and_disabled_demangling_pass_through() {
        assert_eq!(name("main", None), "main");
        assert_eq!(name("compute", Some(gimli::DW_LANG_C11)), "compute");
        assert_eq!(name("_Zgarbage", None), "_Zgarbage");
        let mut out = Vec::new();
        push_name("_ZN3foo3barEi", None, false, &mut out);
        assert_eq!(out, ["_ZN3foo3barEi"]);
    }
}
