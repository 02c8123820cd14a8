//! `cargo fuzz run shell`: any bytes as a Dockerfile word expanded by the frontend's shell
//! lexer (the first byte picks the escape character, `\` or `` ` ``; the part after a NUL
//! is the value of `$V`). Expansion must never panic, its three entry points must agree,
//! an error must point at a character of the word (the caret of the diagnostic), and a
//! word with nothing to expand comes out as written.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rbuild_frontend::shell::Lexer;

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let escape = if first & 1 == 0 { '\\' } else { '`' };
    let (word, v) = match rest.iter().position(|&b| b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let word = String::from_utf8_lossy(word);
    let v = String::from_utf8_lossy(v).into_owned();
    let env = |name: &str| -> Option<String> {
        match name {
            "A" => Some("a b".into()),
            "E" => Some(String::new()),
            "G" => Some("*?[x]\\".into()),
            "V" => Some(v.clone()),
            _ => None,
        }
    };
    let lexer = Lexer::new(escape);
    let one = lexer.expand_word(&word, &env);
    let split = lexer.expand_words(&word, &env);
    let all = lexer.expand(&word, &env);
    match (&one, &split, &all) {
        (Ok(one), Ok(split), Ok(all)) => {
            assert_eq!(&all.value, one, "expand and expand_word disagree");
            assert_eq!(&all.words, split, "expand and expand_words disagree");
            assert!(
                split.iter().all(|w| !w.is_empty()),
                "an empty word: {split:?}"
            );
            for n in &all.matched {
                assert!(env(n).is_some(), "{n} matched but unset");
            }
            for n in &all.unmatched {
                assert!(env(n).is_none(), "{n} unmatched but set");
            }
            let plain = !word.contains(['$', '\'', '"', escape]);
            if plain {
                assert_eq!(one, &*word, "a word with nothing to expand changed");
            }
        }
        (Err(a), Err(b), Err(c)) => {
            assert!(a == b && b == c, "the entry points fail differently");
            assert!(
                a.offset < word.len() && word.is_char_boundary(a.offset),
                "error offset {} is not a character of {word:?}",
                a.offset
            );
            let _ = a.docker_message(&word);
        }
        _ => panic!("the entry points disagree on success: {one:?} {split:?} {all:?}"),
    }
});
