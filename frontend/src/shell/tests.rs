//! Unit tests of `shell.rs`: word expansion, quoting, patterns and their errors.

use super::*;
use std::collections::HashMap;

fn env_of(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn word_with(input: &str, pairs: &[(&str, &str)]) -> Result<String, ShellError> {
    let env = env_of(pairs);
    Lexer::new('\\').expand_word(input, &|k| env.get(k).cloned())
}

fn word(input: &str) -> Result<String, ShellError> {
    word_with(input, &[("FOO", "xxyy"), ("EMPTY", ""), ("SP", "a  b")])
}

fn words_with(input: &str, pairs: &[(&str, &str)]) -> Result<Vec<String>, ShellError> {
    let env = env_of(pairs);
    Lexer::new('\\').expand_words(input, &|k| env.get(k).cloned())
}

fn err(input: &str) -> ShellError {
    match word(input) {
        Ok(v) => panic!("{input:?} expanded to {v:?}, expected an error"),
        Err(e) => e,
    }
}

#[test]
fn plain_and_simple_variables() {
    assert_eq!(word("a b").unwrap(), "a b");
    assert_eq!(word("$FOO").unwrap(), "xxyy");
    assert_eq!(word("${FOO}").unwrap(), "xxyy");
    assert_eq!(word("$FOO.x").unwrap(), "xxyy.x");
    assert_eq!(word("${FOO}bar").unwrap(), "xxyybar");
    assert_eq!(word("$FOObar").unwrap(), "");
    assert_eq!(word("$UNSET-x").unwrap(), "-x");
    assert_eq!(word("$").unwrap(), "$");
    assert_eq!(word("a$").unwrap(), "a$");
    assert_eq!(word("$ x").unwrap(), "$ x");
    assert_eq!(word("$1abc").unwrap(), "abc");
    assert_eq!(word("$@x").unwrap(), "x");
}

#[test]
fn default_alternative_and_required() {
    assert_eq!(word("${UNSET:-d}").unwrap(), "d");
    assert_eq!(word("${EMPTY:-d}").unwrap(), "d");
    assert_eq!(word("${EMPTY-d}").unwrap(), "");
    assert_eq!(word("${UNSET-d}").unwrap(), "d");
    assert_eq!(word("${FOO:-d}").unwrap(), "xxyy");
    assert_eq!(word("${FOO:+alt}").unwrap(), "alt");
    assert_eq!(word("${EMPTY:+alt}").unwrap(), "");
    assert_eq!(word("${EMPTY+alt}").unwrap(), "alt");
    assert_eq!(word("${UNSET+alt}").unwrap(), "");
    assert_eq!(word("${EMPTY?}").unwrap(), "");
    assert_eq!(word("${FOO:?}").unwrap(), "xxyy");
    // Nested expansions in the operand.
    assert_eq!(word("${UNSET:-${FOO}}").unwrap(), "xxyy");
    assert_eq!(word("${UNSET:-${U2:-${FOO}x}}").unwrap(), "xxyyx");
    assert_eq!(word("${FOO:+\"${FOO}\" q}").unwrap(), "xxyy q");
    assert_eq!(word("${UNSET:-a}}").unwrap(), "a}");
}

#[test]
fn required_variable_messages() {
    let e = err("ab${UNSET:?must be set}");
    assert_eq!(e.message, "UNSET: must be set");
    assert_eq!(e.offset, 2);
    assert_eq!(
        err("${UNSET:?}").message,
        "UNSET: is not allowed to be unset"
    );
    assert_eq!(
        err("${UNSET?}").message,
        "UNSET: is not allowed to be unset"
    );
    assert_eq!(
        err("${EMPTY:?}").message,
        "EMPTY: is not allowed to be empty"
    );
    assert_eq!(err("${EMPTY:?need $FOO}").message, "EMPTY: need xxyy");
    assert_eq!(
        err("${EMPTY:?x}").docker_message("${EMPTY:?x}"),
        "failed to process \"${EMPTY:?x}\": EMPTY: x"
    );
}

#[test]
fn malformed_substitutions() {
    for (input, message, offset) in [
        ("${}", "syntax error: bad substitution", 0),
        ("ab${}", "syntax error: bad substitution", 2),
        ("${:}", "syntax error: bad substitution", 0),
        ("${{a}", "syntax error: bad substitution", 0),
        ("${", "syntax error: missing '}'", 0),
        ("x${FOO", "syntax error: missing '}'", 1),
        ("${FOO:-abc", "syntax error: missing '}'", 0),
        ("${FOO:-a ${b}", "syntax error: missing '}'", 0),
        ("${FOO:", "syntax error: missing '}'", 0),
        ("${.}", "unsupported modifier (.) in substitution", 0),
        ("${FOO:=x}", "unsupported modifier (:=) in substitution", 0),
        ("${FOO:YY}", "unsupported modifier (:Y) in substitution", 0),
        ("${FOO/x}", "syntax error: missing '/' in ${}", 0),
        ("${FOO//}", "syntax error: missing '/' in ${}", 0),
        ("${FOO/x/y", "syntax error: missing '}'", 0),
        (
            "${FOO#\\x}",
            "invalid pattern (\\x) in substitution: invalid escape '\\x'",
            0,
        ),
    ] {
        let e = err(input);
        assert_eq!((e.message.as_str(), e.offset), (message, offset), "{input}");
    }
}

#[test]
fn unterminated_quotes() {
    let e = err("ab'cd");
    assert_eq!(
        e.message,
        "unexpected end of statement while looking for matching single-quote"
    );
    assert_eq!(e.offset, 2);
    let e = err("a\"b\\\"");
    assert_eq!(
        e.message,
        "unexpected end of statement while looking for matching double-quote"
    );
    assert_eq!(e.offset, 1);
    // The byte offset counts UTF-8 bytes.
    assert_eq!(err("안'x").offset, 3);
}

#[test]
fn quotes_and_escapes() {
    assert_eq!(word("'$FOO \\n'").unwrap(), "$FOO \\n");
    assert_eq!(word("\"$FOO \\n\"").unwrap(), "xxyy \\n");
    assert_eq!(word("\"\\$FOO \\\" \\\\\"").unwrap(), "$FOO \" \\");
    assert_eq!(word("\\$FOO").unwrap(), "$FOO");
    assert_eq!(word("\\\\$FOO").unwrap(), "\\xxyy");
    assert_eq!(word("a\\ b").unwrap(), "a b");
    assert_eq!(word("end\\").unwrap(), "end");
    assert_eq!(word("'a'\"b\"c").unwrap(), "abc");
    assert_eq!(word("\\${FOO}").unwrap(), "${FOO}");
}

#[test]
fn backtick_escape() {
    let lex = Lexer::new('`');
    let env = |k: &str| (k == "A").then(|| "v".to_string());
    assert_eq!(lex.expand_word("`$A \\x", &env).unwrap(), "$A \\x");
    assert_eq!(lex.expand_word("\"`\"`$A\"", &env).unwrap(), "\"$A");
    assert_eq!(lex.expand_word("C:\\dir\\$A", &env).unwrap(), "C:\\dir\\v");
}

#[test]
fn unicode_names_and_values() {
    let env = [("KOREAN", "한국어"), ("변수", "v")];
    assert_eq!(word_with("안녕$KOREAN!", &env).unwrap(), "안녕한국어!");
    assert_eq!(word_with("${변수}", &env).unwrap(), "v");
    assert_eq!(word_with("${KOREAN#한}", &env).unwrap(), "국어");
    assert_eq!(word_with("${KOREAN%?}", &env).unwrap(), "한국");
}

#[test]
fn trim_patterns() {
    let env = [("P", "/usr/local/bin/tool.tar.gz"), ("S", "a***yy*")];
    assert_eq!(
        word_with("${P#*/}", &env).unwrap(),
        "usr/local/bin/tool.tar.gz"
    );
    assert_eq!(word_with("${P##*/}", &env).unwrap(), "tool.tar.gz");
    assert_eq!(
        word_with("${P%.*}", &env).unwrap(),
        "/usr/local/bin/tool.tar"
    );
    assert_eq!(word_with("${P%%.*}", &env).unwrap(), "/usr/local/bin/tool");
    assert_eq!(
        word_with("${P#nomatch}", &env).unwrap(),
        "/usr/local/bin/tool.tar.gz"
    );
    assert_eq!(
        word_with("${P#/usr?}", &env).unwrap(),
        "local/bin/tool.tar.gz"
    );
    assert_eq!(
        word_with("${P:#/usr}", &env).unwrap(),
        "/local/bin/tool.tar.gz"
    );
    assert_eq!(word_with("${S%%\\**\\*}", &env).unwrap(), "a");
    assert_eq!(word_with("${S#a\\*}", &env).unwrap(), "**yy*");
    assert_eq!(
        word_with("${P#}", &env).unwrap(),
        "/usr/local/bin/tool.tar.gz"
    );
    assert_eq!(word_with("${UNSET#x}", &env).unwrap(), "");
    // Regex metacharacters in patterns are literal.
    let env = [("R", "()[]{}^$.*?|\\x")];
    assert_eq!(word_with("${R#()[]{\\}^$.\\*\\?|\\\\}", &env).unwrap(), "x");
}

#[test]
fn replace_patterns() {
    let env = [
        ("F", "/tmp/tmp/bar.txt"),
        ("N", "/tmp"),
        ("G", "/foo*/*/*.txt"),
        ("W", "\\*/"),
    ];
    assert_eq!(word_with("${F/$N/}", &env).unwrap(), "/tmp/bar.txt");
    assert_eq!(word_with("${F//$N/}", &env).unwrap(), "/bar.txt");
    assert_eq!(word_with("${F//tmp/x$}", &env).unwrap(), "/x$/x$/bar.txt");
    assert_eq!(word_with("${G/$W/.}", &env).unwrap(), "/foo.*/*.txt");
    assert_eq!(word_with("${G//$W/.}", &env).unwrap(), "/foo..*.txt");
    assert_eq!(word_with("${F/t*p/X}", &env).unwrap(), "/X/bar.txt");
    assert_eq!(word_with("${F/?/X}", &env).unwrap(), "Xtmp/tmp/bar.txt");
    assert_eq!(word_with("${F///}", &env).unwrap(), "/tmp/tmp/bar.txt");
    assert_eq!(word_with("${F//*/x}", &env).unwrap(), "x");
    assert_eq!(word_with("${F//t/}", &env).unwrap(), "/mp/mp/bar.x");
    // BuildKit keeps the escape in the replacement text.
    assert_eq!(
        word_with("${F//\\//\\/}", &env).unwrap(),
        "\\/tmp\\/tmp\\/bar.txt"
    );
}

#[test]
fn forms_seen_in_real_dockerfiles() {
    let env = [("TP", "linux/amd64"), ("LD", "/opt/lib"), ("ARCH", "arm64")];
    for (input, want) in [
        ("${TP#linux/amd64}", ""),
        ("${TP#linux/arm64}", "linux/amd64"),
        ("${TP##*/}", "amd64"),
        ("${TP%/*}", "linux"),
        ("${LD:+$LD:}/usr/lib", "/opt/lib:/usr/lib"),
        ("${NOLD:+$NOLD:}/usr/lib", "/usr/lib"),
        ("${D:-\"supported\"}", "supported"),
        ("${TP:+\"all=-N -l\"}", "all=-N -l"),
        ("go${ARCH:+-$ARCH}.tgz", "go-arm64.tgz"),
        ("${P:-/usr/local/sbin:/usr/bin}", "/usr/local/sbin:/usr/bin"),
    ] {
        assert_eq!(word_with(input, &env).unwrap(), want, "{input}");
    }
}

#[test]
fn reports_looked_up_names() {
    let env = env_of(&[("A", "1"), ("E", "")]);
    let got = Lexer::default()
        .expand("$A ${B:-$E} '$C' ${D:+x}", &|k| env.get(k).cloned())
        .unwrap();
    assert_eq!(got.value, "1  $C ");
    assert_eq!(got.words, ["1", "$C"]);
    let names = |s: &BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>();
    assert_eq!(names(&got.matched), ["A", "E"]);
    assert_eq!(names(&got.unmatched), ["B", "D"]);
}

#[test]
fn word_splitting() {
    let env = [("SP", "  a  b "), ("E", "")];
    assert_eq!(words_with("x y  z", &env).unwrap(), ["x", "y", "z"]);
    assert_eq!(words_with("x${SP}y", &env).unwrap(), ["x", "a", "b", "y"]);
    assert_eq!(words_with("x${SP%% }y", &env).unwrap(), ["x", "a", "by"]);
    assert_eq!(words_with("x\"${SP}\"y", &env).unwrap(), ["x  a  b y"]);
    assert_eq!(words_with("a\\ b 'c d'", &env).unwrap(), ["a b", "c d"]);
    assert_eq!(words_with("\"\" a $E", &env).unwrap(), ["a"]);
    assert_eq!(words_with("${U:-p q}", &env).unwrap(), ["p", "q"]);
    assert!(words_with("", &env).unwrap().is_empty());
    assert!(words_with("a \"b", &env).is_err());
}

proptest::proptest! {
    #[test]
    fn never_panics_and_offsets_are_in_bounds(s in "[a-z${}:#%/?*\\\\'\" \t!-]{0,24}|\\PC{0,24}") {
        let env = |k: &str| (k == "a").then(|| "x y".to_string());
        for lexer in [Lexer::new('\\'), Lexer::new('`')] {
            if let Err(e) = lexer.expand_word(&s, &env) {
                proptest::prop_assert!(e.offset < s.len() && s.is_char_boundary(e.offset), "{e:?} for {s:?}");
            }
            let _ = lexer.expand_words(&s, &env);
        }
    }

    #[test]
    fn plain_text_is_unchanged(s in "[a-zA-Z0-9_./:=@+,-]{0,30}") {
        let env = |_: &str| None;
        proptest::prop_assert_eq!(Lexer::default().expand_word(&s, &env).unwrap(), s.clone());
        let words = Lexer::default().expand_words(&s, &env).unwrap();
        proptest::prop_assert_eq!(words, if s.is_empty() { vec![] } else { vec![s] });
    }
}

#[test]
fn pattern_helpers() {
    assert_eq!(reverse_pattern("a\\*c"), "c\\*a");
    assert_eq!(reverse_pattern("\\\\\\ab"), "b\\a\\\\");
    assert_eq!(reverse_pattern("ab\\"), "\\ba");
    assert!(shell_pattern_to_regex("\\", true, true).is_err());
    assert_eq!(
        shell_pattern_to_regex("\\x", true, true)
            .unwrap_err()
            .to_string(),
        "invalid escape '\\x'"
    );
    assert_eq!(
        shell_pattern_to_regex("a\\", true, true)
            .unwrap_err()
            .to_string(),
        "invalid escape '\\' at end of pattern"
    );
    assert!(shell_pattern_to_regex("\\\\\\", true, true).is_err());
    let re = shell_pattern_to_regex("a-b#c d&~", true, true).unwrap();
    assert!(re.is_match("a-b#c d&~"));
}
