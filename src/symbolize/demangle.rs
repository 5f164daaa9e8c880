//! Demangling of symbol names: Rust (legacy and v0) through `rustc-demangle`, printed without the
//! hash, and C++ (Itanium ABI) through `cpp_demangle`, printed without return type and
//! parameters. Where `cpp_demangle` cannot parse a name (it gives up on some SFINAE template
//! arguments), a small parser of the name's prefix still gives the qualified name. The naming
//! rules that follow demangling live in `names.rs`.

use std::fmt::Write;

use super::names::Lang;

/// A demangled name and the language of the scheme that took it.
pub(crate) struct Demangled {
    pub name: String,
    pub lang: Lang,
}

/// The demangled form of `raw`, if it is a mangled name of `lang` (of any known scheme when
/// `lang` is [`Lang::Other`], as for symbol-table names).
pub(crate) fn demangle(raw: &str, lang: Lang) -> Option<Demangled> {
    if !(raw.starts_with("_Z") || raw.starts_with("_R") || raw.starts_with("__Z")) {
        return None;
    }
    if lang != Lang::Cpp {
        if let Ok(demangled) = rustc_demangle::try_demangle(raw) {
            let mut name = String::new();
            // `{:#}` leaves out the hash (`::h0123456789abcdef` or the v0 crate disambiguator).
            write!(name, "{demangled:#}").ok()?;
            return Some(Demangled {
                name,
                lang: Lang::Rust,
            });
        }
    }
    if lang == Lang::Rust || !raw.starts_with("_Z") {
        return None;
    }
    let name = demangle_cpp(raw)?;
    Some(Demangled {
        name,
        lang: Lang::Cpp,
    })
}

/// A C++ name without return type and parameters, its clone suffix (`.cold`, `.isra.0`) kept.
fn demangle_cpp(raw: &str) -> Option<String> {
    // `.` never occurs in a mangled name: what follows is a clone suffix.
    let (mangled, clone) = raw.split_at(raw.find('.').unwrap_or(raw.len()));
    let options = cpp_demangle::DemangleOptions::new()
        .no_params()
        .no_return_type();
    let mut name = cpp_demangle::Symbol::new(mangled.as_bytes())
        .ok()
        .and_then(|symbol| symbol.demangle_with_options(&options).ok())
        .or_else(|| fallback::qualified_name(mangled))?;
    // Qualifiers of a member function (`operator() const`) are not part of its name.
    while let Some(stripped) = [" const", " volatile", " &&", " &"]
        .iter()
        .find_map(|q| name.strip_suffix(q))
    {
        name.truncate(stripped.len());
    }
    name.push_str(clone);
    Some(name)
}

/// The qualified name of a mangled C++ function from the start of its encoding, for names
/// `cpp_demangle` cannot parse. Template arguments are shown only when they are plain names.
mod fallback {
    /// `_Z` followed by a nested (`N…E`), `St`-prefixed or plain name: its components joined by
    /// `::`.
    pub(super) fn qualified_name(mangled: &str) -> Option<String> {
        let mut p = Parser {
            s: mangled.strip_prefix("_Z")?.as_bytes(),
            i: 0,
        };
        let mut parts: Vec<String> = Vec::new();
        let nested = p.eat(b"N");
        if nested {
            while p.eat(b"r") || p.eat(b"V") || p.eat(b"K") {}
            let _ = p.eat(b"R") || p.eat(b"O");
        }
        loop {
            if p.eat(b"St") {
                parts.push("std".into());
                continue;
            }
            if let Some(id) = p.identifier() {
                parts.push(id);
            } else if let Some(last) = parts.last() {
                let base = last.split('<').next().unwrap_or(last).to_owned();
                if p.eat(b"C1") || p.eat(b"C2") || p.eat(b"C3") {
                    parts.push(base);
                } else if p.eat(b"D0") || p.eat(b"D1") || p.eat(b"D2") {
                    parts.push(format!("~{base}"));
                } else {
                    break;
                }
            } else {
                break;
            }
            // ABI tags (`B5cxx11`) are not shown, as c++filt shows them only in brackets.
            while p.eat(b"B") && p.identifier().is_some() {}
            if p.peek() == Some(b'I') {
                let args = p.template_args()?;
                if let Some(last) = parts.last_mut() {
                    last.push_str(&args);
                }
            }
            if !nested || p.peek() == Some(b'E') {
                break;
            }
        }
        (!parts.is_empty()).then(|| parts.join("::"))
    }

    struct Parser<'a> {
        s: &'a [u8],
        i: usize,
    }

    impl Parser<'_> {
        fn peek(&self) -> Option<u8> {
            self.s.get(self.i).copied()
        }

        fn eat(&mut self, token: &[u8]) -> bool {
            let found = self.s[self.i..].starts_with(token);
            if found {
                self.i += token.len();
            }
            found
        }

        /// `<length><identifier>`; `_GLOBAL__N…` is the anonymous namespace.
        fn identifier(&mut self) -> Option<String> {
            let digits = self.s[self.i..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
            let len: usize = std::str::from_utf8(&self.s[self.i..self.i + digits])
                .ok()?
                .parse()
                .ok()?;
            let start = self.i + digits;
            let id = self.s.get(start..start.checked_add(len)?)?;
            self.i = start + len;
            let id = String::from_utf8_lossy(id).into_owned();
            Some(if id.starts_with("_GLOBAL__N") {
                "(anonymous namespace)".into()
            } else {
                id
            })
        }

        /// Skips `I…E`; returns `<A, B>` if every argument is a plain name, else `""`.
        fn template_args(&mut self) -> Option<String> {
            self.eat(b"I");
            let mut depth = 1usize;
            let mut plain = Vec::new();
            let mut simple = true;
            while depth > 0 {
                let b = self.peek()?;
                if b.is_ascii_digit() {
                    let id = self.identifier()?;
                    if depth == 1 {
                        plain.push(id);
                    } else {
                        simple = false;
                    }
                    continue;
                }
                self.i += 1;
                match b {
                    b'E' => {
                        depth -= 1;
                        continue;
                    }
                    b'I' | b'N' | b'X' | b'J' => depth += 1,
                    // A literal: `L <type> <value> E`, or `L_Z <encoding> E`.
                    b'L' => {
                        let close = self.s[self.i..].iter().position(|&c| c == b'E')?;
                        self.i += close + 1;
                    }
                    // Substitutions and template parameters: `S_`, `S0_`, `T_`, `T1_`; `St`...
                    b'S' | b'T' => {
                        if self.peek().is_some_and(|c| c.is_ascii_lowercase()) {
                            self.i += 1;
                        } else {
                            let end = self.s[self.i..].iter().position(|&c| c == b'_')?;
                            self.i += end + 1;
                        }
                    }
                    b'D' => self.i += 1,
                    _ => {}
                }
                simple = false;
            }
            Some(if simple && !plain.is_empty() {
                format!("<{}>", plain.join(", "))
            } else {
                String::new()
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(raw: &str, lang: Lang) -> Option<String> {
        demangle(raw, lang).map(|d| d.name)
    }

    #[test]
    fn rust_legacy_loses_its_hash() {
        let raw = "_ZN4core3ptr13drop_in_place17h1d6ad6fd1b9c0a6fE";
        assert_eq!(name(raw, Lang::Other).unwrap(), "core::ptr::drop_in_place");
        assert_eq!(name(raw, Lang::Rust).unwrap(), "core::ptr::drop_in_place");
        assert!(demangle(raw, Lang::Other).unwrap().lang == Lang::Rust);
    }

    #[test]
    fn rust_v0_loses_its_disambiguators() {
        assert_eq!(
            name("_RNvCs1234_7mycrate3foo", Lang::Other).unwrap(),
            "mycrate::foo"
        );
    }

    #[test]
    fn cpp_loses_its_parameters() {
        assert_eq!(name("_ZN3foo3barEi", Lang::Other).unwrap(), "foo::bar");
        assert_eq!(name("_ZN3foo3barEi", Lang::Cpp).unwrap(), "foo::bar");
        assert!(demangle("_ZN3foo3barEi", Lang::Other).unwrap().lang == Lang::Cpp);
    }

    #[test]
    fn fallback_parses_the_prefix() {
        let q = fallback::qualified_name;
        assert_eq!(q("_ZN3foo3barEi").unwrap(), "foo::bar");
        assert_eq!(
            q("_ZNSt6vectorIiSaIiEE9push_backEv").unwrap(),
            "std::vector::push_back"
        );
        assert_eq!(q("_ZN3FooC2Ev").unwrap(), "Foo::Foo");
        assert_eq!(q("_ZN3FooD1Ev").unwrap(), "Foo::~Foo");
        assert_eq!(q("_ZSt4swapI3RecEvRS0_S1_").unwrap(), "std::swap<Rec>");
        assert_eq!(
            q("_ZN12_GLOBAL__N_14workEv").unwrap(),
            "(anonymous namespace)::work"
        );
        assert!(q("_Zgarbage").is_none());
    }

    #[test]
    fn plain_names_are_not_mangled() {
        assert!(demangle("main", Lang::Other).is_none());
        assert!(demangle("_Zgarbage", Lang::Other).is_none());
        assert!(demangle("_ZN3foo3barEi", Lang::Rust).is_none());
    }
}
