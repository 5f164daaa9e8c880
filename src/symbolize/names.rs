//! The naming rules, the same for every backend (see the README's "Names" section):
//!
//! - symbol versions go (`realpath@@GLIBC_2.3` → `realpath`);
//! - mangled names are demangled (Rust without the hash, C++ through `cpp_demangle` or, where it
//!   fails, a fallback that still gives the qualified name);
//! - C++ names lose their return type and parameter list (`operator()` keeps its parentheses,
//!   lambdas keep theirs: `main::{lambda(int)#1}::operator()`); clone suffixes stay (`f.cold`);
//! - Rust names lose their generic arguments (`fold<usize, …>` → `fold`,
//!   `{closure#0}<u64>` → `{closure#0}`) unless full names are asked for;
//! - `;` (the folded format's frame separator) becomes `:`.
//!
//! The symbolizer knows each name's language (from DWARF or from the demangler that took it) and
//! calls [`display`]; names produced by external tools (perf script, dtrace) go through
//! [`clean_external`], which guesses the language from the text; [`tidy`] is the last step
//! before a name enters a folded stack.

use std::borrow::Cow;

use gimli::DwLang;

use super::demangle::{demangle, Demangled};

/// The language a name belongs to, as far as it is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    Rust,
    Cpp,
    /// C, assembly, JIT names, or not known.
    Other,
}

impl Lang {
    /// The language of a DWARF unit.
    pub(crate) fn from_dwarf(language: Option<DwLang>) -> Self {
        match language {
            Some(gimli::DW_LANG_Rust) => Lang::Rust,
            Some(
                gimli::DW_LANG_C_plus_plus
                | gimli::DW_LANG_C_plus_plus_03
                | gimli::DW_LANG_C_plus_plus_11
                | gimli::DW_LANG_C_plus_plus_14
                | gimli::DW_LANG_C_plus_plus_17
                | gimli::DW_LANG_C_plus_plus_20,
            ) => Lang::Cpp,
            _ => Lang::Other,
        }
    }
}

/// The display name of a raw symbol or DWARF name of a known (or unknown) language.
///
/// `demangle` off keeps mangled names as they are (still without a version suffix); `full`
/// keeps Rust generic arguments.
pub fn display(raw: &str, language: Option<DwLang>, demangle_names: bool, full: bool) -> String {
    let raw = strip_version(raw);
    let lang = Lang::from_dwarf(language);
    if demangle_names {
        if let Some(Demangled { name, lang }) = demangle(raw, lang) {
            return finish(name, lang, full);
        }
    }
    finish(raw.to_owned(), lang, full)
}

/// A frame name from an external tool (perf script, dtrace): the same rules as [`display`],
/// with the language guessed from the text.
pub fn clean_external(name: &str, full: bool) -> String {
    // perf names PLT stubs after their target, mangled: `_Znwm@plt` is `operator new@plt`.
    if let Some(stem) = name.strip_suffix("@plt").filter(|s| !s.is_empty()) {
        return clean_external(stem, full) + "@plt";
    }
    let name = strip_version(name);
    if let Some(Demangled { name, lang }) = demangle(name, Lang::Other) {
        return finish(name, lang, full);
    }
    let lang = guess_lang(name);
    let name = match lang {
        Lang::Cpp => {
            // perf prints clone suffixes after the parameters: `f(int) [clone .isra.0]`.
            let mut short = strip_signature(name).into_owned();
            for clone in name.split("[clone ").skip(1) {
                short.push_str(clone.split(']').next().unwrap_or_default());
            }
            short
        }
        _ => name.to_owned(),
    };
    finish(name, lang, full)
}

/// Makes a name safe for a folded stack: `;` becomes `:`, and a C++ parameter list left in
/// the name (from a perf map, say) is dropped. Names that follow the rules come out unchanged.
pub fn tidy(name: &str) -> Cow<'_, str> {
    let name = match scan(name).params {
        Some(cut) => &name[..cut],
        None => name,
    };
    if name.contains(';') {
        Cow::Owned(name.replace(';', ":"))
    } else {
        Cow::Borrowed(name)
    }
}

/// Applies the language's rules to a demangled or plain name.
fn finish(name: String, lang: Lang, full: bool) -> String {
    match lang {
        Lang::Rust if !full => match strip_generics(&name) {
            Cow::Owned(short) => short,
            Cow::Borrowed(_) => name,
        },
        _ => name,
    }
}

/// `name` without a trailing symbol version (`@@GLIBC_2.3`, `@GLIBC_2.2.5`, `@@Base`).
pub fn strip_version(name: &str) -> &str {
    let Some(at) = name.find('@') else {
        return name;
    };
    let version = name[at..].trim_start_matches('@');
    let looks_like_version = at > 0
        && name[at..].len() - version.len() <= 2
        && !version.is_empty()
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.');
    if looks_like_version && version != "plt" {
        &name[..at]
    } else {
        name
    }
}

/// A guess at the language of an already demangled name: Rust if it has Rust-only syntax
/// (closures, a qualified path `<T as Trait>::f` or `<T>::f`: no C++ name starts with `<`, Rust
/// primitive types in generic arguments), C++ if it has a parameter list.
fn guess_lang(name: &str) -> Lang {
    const RUST_MARKS: [&str; 8] = [
        "{closure",
        "{{closure}}",
        "{shim:",
        "{impl#",
        "core::",
        "alloc::",
        "usize",
        "&mut ",
    ];
    if RUST_MARKS.iter().any(|m| name.contains(m))
        || (name.starts_with('<') && name.contains(">::"))
    {
        Lang::Rust
    } else if scan(name).params.is_some() {
        Lang::Cpp
    } else {
        Lang::Other
    }
}

/// What [`scan`] finds at the top level of a C++ name.
#[derive(Debug, PartialEq, Eq)]
struct Scan {
    /// Where the parameter list starts.
    params: Option<usize>,
    /// Where the name starts after a return type (0 if none).
    name_start: usize,
}

/// Finds the top-level parameter list and return type of a C++-style name. Understands operator
/// names (`operator()`, `operator<`, `operator new[]`), lambdas (`{lambda(int)#1}`),
/// `(anonymous namespace)`, `decltype(...)` and Go's `pkg.(*T).M`.
fn scan(name: &str) -> Scan {
    let bytes = name.as_bytes();
    let mut depth = 0i32;
    let mut name_start = 0;
    let mut after_operator = false;
    let mut i = 0;
    while i < bytes.len() {
        if let Some(len) = operator_token(name, i) {
            after_operator |= depth == 0;
            i += len;
            continue;
        }
        match bytes[i] {
            b'<' | b'[' | b'{' => depth += 1,
            b'>' if i > 0 && bytes[i - 1] == b'-' => {}
            b'>' | b']' | b'}' | b')' => depth -= 1,
            b' ' if depth == 0 && !after_operator => name_start = i + 1,
            b'(' => {
                if depth == 0 && !paren_is_part_of_name(name, i) {
                    return Scan {
                        params: Some(i),
                        name_start,
                    };
                }
                depth += 1;
            }
            _ => {}
        }
        i += 1;
    }
    Scan {
        params: None,
        name_start: 0,
    }
}

/// True if the `(` at `i` is not a parameter list: a leading `(anonymous namespace)`, Go's
/// `pkg.(*T)`, or the argument of `decltype`/`noexcept`/`sizeof`.
fn paren_is_part_of_name(name: &str, i: usize) -> bool {
    let before = name[..i].trim_end();
    i == 0
        || name[i..].starts_with("(anonymous namespace)")
        || before.ends_with('.')
        || ["decltype", "noexcept", "sizeof", "alignof", "typeof"]
            .iter()
            .any(|k| before.ends_with(k))
}

/// The length of the `operator` token starting at `i` (`operator()`, `operator<<=`, ...), if one
/// starts there. Word operators (`operator new`, `operator bool`) only take the keyword: what
/// follows parses as ordinary text.
fn operator_token(name: &str, i: usize) -> Option<usize> {
    const KEYWORD: &str = "operator";
    let rest = name.get(i..)?;
    if !rest.starts_with(KEYWORD) {
        return None;
    }
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    if i > 0 && ident(name.as_bytes()[i - 1]) {
        return None;
    }
    let after = &rest[KEYWORD.len()..];
    let symbol = if after.starts_with("()") || after.starts_with("[]") {
        2
    } else {
        after
            .bytes()
            .take_while(|b| b"+-*/%^&|~!=<>,".contains(b))
            .count()
    };
    match after.as_bytes().first() {
        Some(&b) if ident(b) => None,
        _ => Some(KEYWORD.len() + symbol),
    }
}

/// A C++ name without its return type and parameter list (and the qualifiers after it). Names
/// without a parameter list come back as they are.
pub fn strip_signature(name: &str) -> Cow<'_, str> {
    let found = scan(name);
    match found.params {
        Some(cut) => Cow::Borrowed(name[found.name_start..cut].trim_end()),
        None => Cow::Borrowed(name),
    }
}

/// A Rust name without generic arguments: `fold<usize, F>` → `fold`, `f::<u8>` → `f`,
/// `{closure#0}<u64>` → `{closure#0}`, `<alloc::vec::Vec<u8> as Drop>::drop` →
/// `<alloc::vec::Vec as Drop>::drop`, and `<Vec<u8>>::push` → `Vec::push`.
pub fn strip_generics(name: &str) -> Cow<'_, str> {
    if !name.contains('<') {
        return Cow::Borrowed(name);
    }
    let bytes = name.as_bytes();
    let mut out = String::with_capacity(name.len());
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let prev = out.as_bytes().last().copied();
        // `::<impl Type>::` (legacy Rust) names an impl block, as `<T as Trait>` names a trait's.
        let opens_arguments = c == b'<'
            && !name[i..].starts_with("<impl ")
            && prev
                .is_some_and(|p| p.is_ascii_alphanumeric() || p == b'_' || p == b'}' || p == b':');
        if opens_arguments {
            if out.ends_with("::") {
                out.truncate(out.len() - 2);
            }
            i = matching_angle(bytes, i);
            continue;
        }
        // Non-ASCII bytes are copied whole with their character.
        let len = name[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&name[i..i + len]);
        i += len;
    }
    // `<Path>::f` with no trait: `Path::f`.
    if let Some(inner) = out.strip_prefix('<') {
        if let Some(close) = inner.find(">::") {
            if !inner[..close].contains(' ') && !inner[..close].contains('<') {
                out = format!("{}{}", &inner[..close], &inner[close + 1..]);
            }
        }
    }
    Cow::Owned(out)
}

/// The index just past the `>` matching the `<` at `open` (or the end), ignoring `->`.
fn matching_angle(bytes: &[u8], open: usize) -> usize {
    let mut depth = 0usize;
    for (i, &b) in bytes.iter().enumerate().skip(open) {
        match b {
            b'<' => depth += 1,
            b'>' if i > 0 && bytes[i - 1] == b'-' => {}
            b'>' => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
    }
    bytes.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUST: Option<DwLang> = Some(gimli::DW_LANG_Rust);
    const CPP: Option<DwLang> = Some(gimli::DW_LANG_C_plus_plus_14);

    #[test]
    fn versions_go_plt_stays() {
        assert_eq!(strip_version("realpath@@GLIBC_2.3"), "realpath");
        assert_eq!(
            strip_version("_IO_file_write@@GLIBC_2.2.5"),
            "_IO_file_write"
        );
        assert_eq!(strip_version("memcpy@GLIBC_2.2.5"), "memcpy");
        assert_eq!(strip_version("memcmp@plt"), "memcmp@plt");
        assert_eq!(strip_version("@home"), "@home");
        assert_eq!(strip_version("a@b c"), "a@b c");
        assert_eq!(
            display(
                "_ZNSt6thread6_State9_M_run_bgEv@@GLIBCXX_3.4.22",
                None,
                true,
                false
            ),
            "std::thread::_State::_M_run_bg"
        );
    }

    #[test]
    fn rust_generics_go_unless_full() {
        let name = "fold<usize, core::ops::range::Range<u64>, core::iter::adapters::filter::{closure_env#0}<u64, demo::{closure_env#0}>>";
        assert_eq!(display(name, RUST, true, false), "fold");
        assert_eq!(display(name, RUST, true, true), name);
        assert_eq!(
            display("{closure#0}<u64, &mut usize>", RUST, true, false),
            "{closure#0}"
        );
        assert_eq!(
            strip_generics("core::ptr::drop_in_place::<alloc::vec::Vec<u8>>"),
            "core::ptr::drop_in_place"
        );
        assert_eq!(
            strip_generics("<core::iter::adapters::map::Map<I, F> as core::iter::traits::iterator::Iterator>::fold::<usize, fn(u8) -> u8>"),
            "<core::iter::adapters::map::Map as core::iter::traits::iterator::Iterator>::fold"
        );
        assert_eq!(
            strip_generics("<alloc::vec::Vec<u8>>::push"),
            "alloc::vec::Vec::push"
        );
        assert_eq!(
            strip_generics("demo::count_primes::{{closure}}"),
            "demo::count_primes::{{closure}}"
        );
        // Legacy mangling: already without instantiated arguments.
        assert_eq!(
            display(
                "_ZN4core4iter6traits8iterator8Iterator4fold17h0123456789abcdefE",
                None,
                true,
                false
            ),
            "core::iter::traits::iterator::Iterator::fold"
        );
        // v0 mangling carries the instantiation.
        assert_eq!(
            display(
                "_RINvNtCs1234_4core3ptr13drop_in_placeINtNtCs1234_5alloc3vec3VechEEB4_",
                None,
                true,
                false
            ),
            "core::ptr::drop_in_place"
        );
    }

    #[test]
    fn cpp_names_lose_return_type_and_parameters() {
        assert_eq!(display("_ZN3foo3barEi", None, true, false), "foo::bar");
        assert_eq!(display("_ZN3foo3barEi", CPP, true, true), "foo::bar");
        assert_eq!(
            display("_ZZ4mainENKUljE_clEj", CPP, true, false),
            "main::{lambda(unsigned int)#1}::operator()"
        );
        assert_eq!(
            display("_ZN3fooltERKS_", None, true, false),
            "foo::operator<"
        );
        assert_eq!(
            display("_ZN3foocvbEv", None, true, false),
            "foo::operator bool"
        );
        assert_eq!(
            display("_ZNSt6vectorIiSaIiEE17_M_realloc_insertIJRKiEEEvN9__gnu_cxx17__normal_iteratorIPiS1_EEDpOT_", None, true, false),
            "std::vector<int, std::allocator<int> >::_M_realloc_insert<int const&>"
        );
        // Clone suffixes stay, as in C names (`f.cold`).
        assert_eq!(
            display(
                "_ZN7fixture8fill_mapERNS_5TableImEEj.cold",
                None,
                true,
                false
            ),
            "fixture::fill_map.cold"
        );
        assert_eq!(
            display(
                "_ZN7fixture8fill_mapERNS_5TableImEEj.isra.0",
                None,
                true,
                false
            ),
            "fixture::fill_map.isra.0"
        );
        // DWARF names of C++ functions are plain and stay so.
        assert_eq!(display("operator()", CPP, true, false), "operator()");
        assert_eq!(
            display("compute", Some(gimli::DW_LANG_C11), true, false),
            "compute"
        );
    }

    #[test]
    fn cpp_fallback_still_gives_the_qualified_name() {
        // cpp_demangle 0.5 cannot parse this SFINAE argument (an unresolved-name expression).
        let swap = "_ZSt4swapI3RecENSt9enable_ifIXsrSt6__and_IJSt6__not_ISt15__is_tuple_likeIT_EESt21is_move_constructibleIS5_ESt18is_move_assignableIS5_EEE5valueEvE4typeERS5_SF_";
        assert_eq!(display(swap, None, true, false), "std::swap<Rec>");
        assert_eq!(display(swap, CPP, true, false), "std::swap<Rec>");
    }

    #[test]
    fn perf_script_cpp_names_are_cleaned() {
        assert_eq!(clean_external("foo(int, char)", false), "foo");
        assert_eq!(
            clean_external("void std::sort<int*>(int*, int*)", false),
            "std::sort<int*>"
        );
        assert_eq!(
            clean_external(
                "std::enable_if<true, void>::type std::swap<Rec>(Rec&, Rec&)",
                false
            ),
            "std::swap<Rec>"
        );
        assert_eq!(
            clean_external("main::{lambda(int)#1}::operator()(int) const", false),
            "main::{lambda(int)#1}::operator()"
        );
        assert_eq!(
            clean_external("foo::operator<(foo const&)", false),
            "foo::operator<"
        );
        assert_eq!(
            clean_external("(anonymous namespace)::f(int) [clone .isra.0]", false),
            "(anonymous namespace)::f.isra.0"
        );
        assert_eq!(
            clean_external("operator new(unsigned long)", false),
            "operator new"
        );
        assert_eq!(clean_external("realpath@@GLIBC_2.3", false), "realpath");
        assert_eq!(clean_external("_Znwm@plt", false), "operator new@plt");
        assert_eq!(clean_external("memcmp@plt", false), "memcmp@plt");
        assert_eq!(clean_external("_ZN3foo3barEi", false), "foo::bar");
        assert_eq!(
            clean_external("fold<usize, core::ops::range::Range<u64>>", false),
            "fold"
        );
        assert_eq!(
            clean_external("fold<usize, core::ops::range::Range<u64>>", true),
            "fold<usize, core::ops::range::Range<u64>>"
        );
        // Not C++, not Rust: left alone.
        assert_eq!(
            clean_external("LazyCompile:*fib /tmp/x.js:3", false),
            "LazyCompile:*fib /tmp/x.js:3"
        );
        assert_eq!(
            clean_external("runtime.(*mheap).alloc", false),
            "runtime.(*mheap).alloc"
        );
        assert_eq!(clean_external("memcmp@plt", false), "memcmp@plt");
        // A Rust inherent-impl path as perf prints it, as the native side simplifies it.
        assert_eq!(
            clean_external("<std::sys::thread::unix::Thread>::new::thread_start", false),
            "std::sys::thread::unix::Thread::new::thread_start"
        );
    }

    #[test]
    fn tidy_drops_cpp_parameters_only() {
        assert_eq!(tidy("foo(int, char)"), "foo");
        assert_eq!(
            tidy("ns::Vec<int (*)(int)>::push(int)"),
            "ns::Vec<int (*)(int)>::push"
        );
        assert_eq!(
            tidy("(anonymous namespace)::f(int)"),
            "(anonymous namespace)::f"
        );
        assert_eq!(tidy("a;b"), "a:b");
        assert_eq!(
            tidy("core::ptr::drop_in_place<T>"),
            "core::ptr::drop_in_place<T>"
        );
        assert_eq!(
            tidy("main::{lambda(unsigned int)#1}::operator()"),
            "main::{lambda(unsigned int)#1}::operator()"
        );
        assert_eq!(tidy("foo::operator<<(int)"), "foo::operator<<");
        assert_eq!(
            tidy("decltype (x.f()) g<int>(int)"),
            "decltype (x.f()) g<int>"
        );
    }
}
